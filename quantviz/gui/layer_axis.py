"""A bar chart's bottom axis naming one layer per bar (the debug strip plot, the compare
view's per-layer error bars): each layer by its shortest unambiguous tail
(``model.layers.1.self_attn.o_proj`` -> ``1.self_attn.o_proj``), elided to a width, and
thinned to as many names as fit the axis without overlapping (30 full names overlapped into
an unreadable line at 1366 px)."""

from __future__ import annotations

import math
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics

__all__ = ["LayerAxis", "short_names"]


def short_names(fqns: list[str]) -> list[str]:
    """Each name's shortest tail of dotted parts that no other name ends with
    (``model.layers.1.self_attn.o_proj`` -> ``1.self_attn.o_proj``; ``fc1`` stays)."""
    parts = [f.split(".") for f in fqns]
    out = []
    for p in parts:
        for k in range(1, len(p) + 1):
            tail = p[-k:]
            if sum(1 for q in parts if q[-k:] == tail) == 1:
                break
        out.append(".".join(tail))
    return out


class LayerAxis(pg.AxisItem):
    """The strip plot's bottom axis: one tick per layer, named by its short name (elided to
    ``max_px``), thinned to as many names as fit the axis' width without overlapping."""

    max_px = 110

    def __init__(self, orientation: str) -> None:
        super().__init__(orientation)
        self.names: list[str] = []
        self.labels: list[str] = []

    def set_names(self, fqns: list[str]) -> None:
        self.names = list(fqns)
        fm = QFontMetrics(self.font())
        self.labels = [
            fm.elidedText(n, Qt.TextElideMode.ElideLeft, self.max_px)
            for n in short_names(self.names)
        ]
        self.picture = None
        self.update()

    def step(self, size: float, lo: float, hi: float) -> int:
        """Every ``step``-th layer is named: labels at least their width plus a gap apart."""
        if not self.labels or size <= 0 or hi <= lo:
            return 1
        fm = QFontMetrics(self.font())
        label_px = max(fm.horizontalAdvance(t) for t in self.labels) + 12
        px_per_layer = size / (hi - lo)
        return max(1, math.ceil(label_px / px_per_layer))

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list[Any]:
        if not self.labels:
            return super().tickValues(minVal, maxVal, size)
        step = self.step(size, minVal, maxVal)
        lo, hi = max(0, math.ceil(minVal)), min(len(self.labels) - 1, math.floor(maxVal))
        return [(float(step), [float(i) for i in range(lo, hi + 1) if i % step == 0])]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        if not self.labels:
            return super().tickStrings(values, scale, spacing)
        n = len(self.labels)
        return [self.labels[round(v)] if 0 <= round(v) < n else "" for v in values]

    def visible_labels(self) -> list[str]:
        """The layer names drawn under the bars now (for tests and tools)."""
        vb = self.linkedView()
        if vb is None or not self.labels:
            return []
        (lo, hi), _ = vb.viewRange()
        ticks = self.tickValues(lo, hi, self.geometry().width())
        return self.tickStrings(ticks[0][1], 1.0, ticks[0][0])
