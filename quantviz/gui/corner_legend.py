"""Keep a plot's legend in a corner of the view where it covers no point.

:class:`CornerLegend` anchors a pyqtgraph legend in the first corner (bottom-right,
top-right, top-left, bottom-left) where it covers none of the given scatter items' points,
else where it covers the fewest. It re-places the legend when the view box is resized and,
throttled by a short single-shot timer, when its range changes (a zoom or a pan), so a
drag re-places it at most every :data:`DELAY_MS` ms and not on every mouse move.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, QTimer

__all__ = ["CORNERS", "DELAY_MS", "CornerLegend"]

#: legend corners (x, y anchor; 1 = right / bottom) in order of preference
CORNERS = ((1, 1), (1, 0), (0, 0), (0, 1))
#: the longest a zoom or pan waits for the legend to be re-placed
DELAY_MS = 50
_GAP = 6  # from the view's edge, px
_AIR = 8.0  # a marker's radius and a little air, px


class CornerLegend(QObject):
    """Places ``legend`` in ``vb`` clear of the points of ``items`` (scatter plot items)."""

    def __init__(
        self, legend: Any, vb: pg.ViewBox, items: Sequence[Any], parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.legend, self.vb, self.items = legend, vb, list(items)
        #: the corner the legend is anchored in
        self.corner = CORNERS[0]
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DELAY_MS)
        self.timer.timeout.connect(self.place)
        vb.sigResized.connect(self.place)
        vb.sigRangeChanged.connect(self.schedule)

    def schedule(self, *_: Any) -> None:
        """Re-place once the timer runs out (a running timer is not restarted: a long drag
        still re-places every :data:`DELAY_MS` ms)."""
        if not self.timer.isActive():
            self.timer.start()

    def covered(self, corner: tuple[int, int], pts: list[QPointF]) -> int:
        """How many of ``pts`` (view box pixels) the legend would cover in ``corner``."""
        w, h = self.vb.width(), self.vb.height()
        lw, lh = self.legend.width(), self.legend.height()
        x0 = corner[0] * (w - lw) + (-_GAP if corner[0] else _GAP)
        y0 = corner[1] * (h - lh) + (-_GAP if corner[1] else _GAP)
        r = _AIR
        return sum(x0 - r <= p.x() <= x0 + lw + r and y0 - r <= p.y() <= y0 + lh + r for p in pts)

    def place(self, *_: Any) -> None:
        """Anchor the legend in the first corner of the view where it covers no point,
        else where it covers the fewest."""
        self.timer.stop()
        vb = self.vb
        pts = []
        for item in self.items:
            xs, ys = item.getData()
            pts += [vb.mapFromView(QPointF(float(x), float(y))) for x, y in zip(xs, ys)]
        best = min(CORNERS, key=lambda c: self.covered(c, pts))  # the first of the least
        self.corner = best
        off = (-_GAP if best[0] else _GAP, -_GAP if best[1] else _GAP)
        self.legend.anchor(itemPos=best, parentPos=best, offset=off)
