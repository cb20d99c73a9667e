"""The selected layer's input-activation histogram from the calibration statistics, with the
calibrated clipping range and the activation grid (when the layer's activations are
quantized)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from quantviz.gui.plot_style import current_theme, style_plot
from quantviz.session import Session

__all__ = ["ActivationView"]

MAX_BARS = 128
LOG_FLOOR = 0.5


def _rebin(counts: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trim empty tails and merge bins down to at most :data:`MAX_BARS` for display."""
    nz = np.nonzero(counts)[0]
    if nz.size == 0:
        return counts[:1].astype(float), edges[:2]
    counts = counts[nz[0] : nz[-1] + 1]
    edges = edges[nz[0] : nz[-1] + 2]
    f = int(np.ceil(len(counts) / MAX_BARS))
    if f > 1:
        pad = (-len(counts)) % f
        counts = np.concatenate([counts, np.zeros(pad, counts.dtype)]).reshape(-1, f).sum(1)
        edges = np.concatenate([edges[::f], edges[-1:]]) if pad else edges[::f]
        edges = edges[: len(counts) + 1]
        if len(edges) < len(counts) + 1:
            edges = np.append(edges, edges[-1] + (edges[-1] - edges[-2]))
    return counts.astype(float), edges


class ActivationView(QWidget):
    """``activationPlot``; ``updated(str)`` after a redraw (the layer's fqn or "")."""

    updated = Signal(str)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        th = current_theme()
        self.plot = pg.PlotWidget(self)
        self.plot.setObjectName("activationPlot")
        style_plot(self.plot, "input activation value", "count")
        pi = self.plot.getPlotItem()
        pi.setTitle("Input activations", size="9pt")
        self.hist_item = pg.PlotDataItem(
            [0.0, 1.0],
            [0.0],
            stepMode="center",
            fillLevel=None,
            brush=pg.mkBrush(*th.hist),
            pen=pg.mkPen(th.hist_line),
        )
        self.range_item = pg.LinearRegionItem(
            (0, 0),
            movable=False,
            brush=pg.mkBrush(th.grid + "22"),
            pen=pg.mkPen(th.grid, width=1.5),
        )
        self.range_item.setZValue(-10)
        self.grid_item = pg.PlotDataItem([], [], connect="pairs", pen=pg.mkPen(th.grid))
        pi.addItem(self.range_item)
        pi.addItem(self.hist_item)
        pi.addItem(self.grid_item)
        self.logCheck = QCheckBox("Log count", self)
        self.logCheck.setObjectName("activationLogCheck")
        self.logCheck.setChecked(True)
        self.logCheck.toggled.connect(self._on_log)
        self.info = QLabel(self)
        self.info.setObjectName("activationInfoLabel")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("font-size: 8pt")
        row = QHBoxLayout()
        row.addWidget(self.info, 1)
        row.addWidget(self.logCheck, 0, Qt.AlignmentFlag.AlignTop)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot, 1)
        lay.addLayout(row)
        self._on_log(True)
        for sig in (
            session.selection_changed,
            session.config_changed,
            session.activation_stats_changed,
            session.model_changed,
        ):
            sig.connect(self.refresh)
        self.refresh()

    def apply_theme(self) -> None:
        """Re-colour every item for the current plot theme (light/dark switch)."""
        th = current_theme()
        style_plot(self.plot, "input activation value", "count")
        self.hist_item.setBrush(pg.mkBrush(*th.hist))
        self.hist_item.setPen(pg.mkPen(th.hist_line))
        self.range_item.setBrush(pg.mkBrush(th.grid + "22"))
        for line in self.range_item.lines:
            line.setPen(pg.mkPen(th.grid, width=1.5))
        self.grid_item.setPen(pg.mkPen(th.grid))
        self.refresh()

    def _on_log(self, on: bool) -> None:
        self.plot.getPlotItem().setLogMode(False, on)
        self.hist_item.setFillLevel(np.log10(LOG_FLOOR) if on else 0)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        s = self.session
        fqn = s.selection[0] if s.selection and s.handle is not None else None
        pi = self.plot.getPlotItem()
        st = s.activation_stats.get(fqn) if fqn else None
        if fqn is None or st is None or st.input.count == 0:
            self.hist_item.setData([0.0, 1.0], [0.0])
            self.grid_item.setData([], [])
            self.range_item.setVisible(False)
            pi.setTitle("Input activations", size="9pt")
            self.info.setText(
                "Select a layer."
                if fqn is None
                else "Calibration statistics are being collected…"
                if s.handle is not None and not s.activation_stats
                else "No calibration statistics for this layer."
            )
            self.updated.emit(fqn or "")
            return
        counts, edges = _rebin(*st.input.histogram())
        shown = np.where(counts > 0, counts, LOG_FLOOR) if self.logCheck.isChecked() else counts
        self.hist_item.setData(edges, shown)
        pi.setTitle(f"{fqn} input ({st.input.count:,} values)", size="9pt")
        spec = s.config.resolve(fqn).activation
        top = float(counts.max()) if counts.size else 1.0
        if spec is None:
            self.grid_item.setData([], [])
            self.range_item.setVisible(False)
            self.info.setText(
                f"range [{st.input.min:.3g}, {st.input.max:.3g}]; kept in float "
                "(choose “Input activations” above to quantize)"
            )
        elif spec.dynamic:
            self.grid_item.setData([], [])
            self.range_item.setVisible(False)
            self.info.setText(f"A{spec.short()}: ranges measured per batch at run time")
        else:
            try:
                from quantviz.eval.apply import fit_static

                fq = fit_static(fqn, spec, st)
            except ValueError as exc:
                self.grid_item.setData([], [])
                self.range_item.setVisible(False)
                self.info.setText(str(exc))
                self.updated.emit(fqn)
                return
            lo, hi = fq.clip_range
            levels = fq.levels.double().numpy()
            x = np.repeat(levels, 2)
            y = np.empty_like(x)
            log = self.logCheck.isChecked()
            y[0::2] = 0.5 if log else 0.0
            y[1::2] = top * (1.6 if log else 1.04)
            self.grid_item.setData(x, y)
            self.range_item.setRegion((lo, hi))
            self.range_item.setVisible(True)
            beyond = float(counts[(edges[:-1] < lo) | (edges[1:] > hi)].sum()) / max(
                counts.sum(), 1.0
            )
            self.info.setText(
                f"A{spec.short()}: calibrated range [{lo:.3g}, {hi:.3g}], {len(levels)} levels; "
                f"~{100 * beyond:.2f}% of calibration values clipped"
            )
        self.updated.emit(fqn)

    def level_count(self) -> int:
        x = self.grid_item.xData
        return 0 if x is None else len(x) // 2
