"""The selected layer's weight histogram with its quantization grid(s) and error numbers.

Items are built once and updated with ``setData``: the grid is ONE
``PlotDataItem(connect="pairs")`` (two points per level), the comparison grid another, the
clipped region two ``LinearRegionItem``s. Layers above :data:`INLINE_LIMIT` elements are
re-quantized in a worker (stale results dropped); smaller ones inline.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from quantviz.app import AppController
from quantviz.core.layer_view import HistData, Quantized
from quantviz.core.spec import QUANTIZERS
from quantviz.gui.plot_style import current_theme, histogram_item, set_fitted_title, style_plot
from quantviz.gui.workers import Runner, torch_threads

__all__ = ["INLINE_LIMIT", "HistogramView"]

#: layers with more weight elements than this are re-quantized off the GUI thread
INLINE_LIMIT = 1_000_000
#: the histogram's title with no model open
NO_MODEL = "No model loaded — File > Open model"
#: where empty bins and grid lines start on a log count axis
LOG_FLOOR = 0.5


def _fmt_q(q: Quantized) -> str:
    sq = "∞" if math.isinf(q.sqnr_db) else f"{q.sqnr_db:.1f}"
    return (
        f"SQNR {sq} dB · MSE {q.mse:.3g} · clipped {100 * q.clipped_fraction:.2f}% · "
        f"{q.bits_per_value:.2f} bits/value"
    )


class HistogramView(QWidget):
    """``histogramPlot`` (weights + grid + clipped region + legend) and ``channelRangePlot``.

    Signals: ``updated(HistData)`` after the plot shows a new state; ``computing(bool)``.
    """

    updated = Signal(object)
    computing = Signal(bool)
    failed = Signal(str)

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.session = session = controller.session
        self.data: HistData | None = None
        self.runner = Runner("histogramRunner", self)
        self.runner.finished.connect(self._show)
        self.runner.failed.connect(lambda exc: self.failed.emit(str(exc)))
        self._fqn: str | None = None
        th = current_theme()

        # -- controls row ------------------------------------------------------------------
        self.logYCheck = QCheckBox("Log count", self)
        self.logYCheck.setObjectName("logYCheck")
        self.compareQuantizerCombo = QComboBox(self)
        self.compareQuantizerCombo.setObjectName("compareQuantizerCombo")
        self.compareQuantizerCombo.addItem("no comparison", None)
        for q in QUANTIZERS:
            self.compareQuantizerCombo.addItem(f"compare with {q}", q)
        self.compareQuantizerCombo.setToolTip(
            "Overlay a second quantizer's grid (same bits and granularity) in another colour"
        )
        self.channelSpin = QSpinBox(self)
        self.channelSpin.setObjectName("channelSpin")
        self.channelSpin.setRange(-1, 0)
        self.channelSpin.setSpecialValueText("all")
        self.channelSpin.setPrefix("channel ")
        self.channelSpin.setEnabled(False)
        self.channelSpin.setToolTip("Per-channel / per-group specs: the row whose grid is shown")
        top = QHBoxLayout()
        top.addWidget(self.compareQuantizerCombo)
        top.addWidget(self.channelSpin)
        top.addStretch(1)
        top.addWidget(self.logYCheck)

        # -- the histogram -------------------------------------------------------------------
        self.plot = pg.PlotWidget(self)
        self.plot.setObjectName("histogramPlot")
        style_plot(self.plot, "weight value", "count")
        pi = self.plot.getPlotItem()
        pi.setTitle("Select a layer", size="10pt")
        self.legend = pi.addLegend(offset=(-6, 6), labelTextSize="8pt")
        self.legend.setBrush(pg.mkBrush(th.background + "d0"))
        self.hist_item = histogram_item(th, name="weights")
        self.clip_left = pg.LinearRegionItem(
            (0, 0), movable=False, brush=pg.mkBrush(*th.clip), pen=pg.mkPen(None)
        )
        self.clip_right = pg.LinearRegionItem(
            (0, 0), movable=False, brush=pg.mkBrush(*th.clip), pen=pg.mkPen(None)
        )
        self.grid_item = pg.PlotDataItem(
            [], [], connect="pairs", pen=pg.mkPen(th.grid, width=1), name="grid"
        )
        self.compare_item = pg.PlotDataItem(
            [],
            [],
            connect="pairs",
            pen=pg.mkPen(th.compare, width=1, style=Qt.PenStyle.DashLine),
            name="compare",
        )
        # the weights after the configuration's transforms / rounding, and their grid
        self.after_item = pg.PlotDataItem(
            [], [], stepMode="center", pen=pg.mkPen(th.accent, width=1.5), name="after"
        )
        self.after_grid_item = pg.PlotDataItem(
            [],
            [],
            connect="pairs",
            pen=pg.mkPen(th.accent, width=1, style=Qt.PenStyle.DotLine),
            name="grid after",
        )
        for it in (self.clip_left, self.clip_right):
            it.setZValue(-10)
            pi.addItem(it)
        pi.addItem(self.hist_item)
        pi.addItem(self.grid_item)
        pi.addItem(self.compare_item)
        pi.addItem(self.after_item)
        pi.addItem(self.after_grid_item)
        self.legend.removeItem(self.compare_item)
        self.legend.removeItem(self.after_item)
        self.legend.removeItem(self.after_grid_item)
        self._compare_in_legend = False
        self._after_in_legend = False

        self.statsLabel = QLabel(self)
        self.statsLabel.setObjectName("weightStatsLabel")
        self.statsLabel.setTextFormat(Qt.TextFormat.RichText)
        self.statsLabel.setWordWrap(True)
        self.statsLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # a fixed height: changing its text must not re-lay out (and repaint) the plot; it
        # grows only when the rows need more than three lines (see _fit_stats)
        self._stats_h = 3 * self.statsLabel.fontMetrics().lineSpacing() + 6
        self.statsLabel.setFixedHeight(self._stats_h)
        self.statsLabel.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)

        # -- the per-channel range plot ----------------------------------------------------
        self.rangePlot = pg.PlotWidget()  # placed by the main window
        self.rangePlot.setObjectName("channelRangePlot")
        style_plot(self.rangePlot, "output channel", "weight")
        self.rangePlot.getPlotItem().setTitle("Min / max per output channel", size="9pt")
        self.range_bars = pg.BarGraphItem(
            x=[0], y0=[0], y1=[0], width=0.8, brush=pg.mkBrush(*th.hist), pen=pg.mkPen(None)
        )
        self.range_sel = pg.BarGraphItem(
            x=[0], y0=[0], y1=[0], width=0.8, brush=pg.mkBrush(th.accent), pen=pg.mkPen(None)
        )
        self.range_sel.setVisible(False)
        self.range_lo = pg.InfiniteLine(angle=0, pen=pg.mkPen(th.grid, style=Qt.PenStyle.DashLine))
        self.range_hi = pg.InfiniteLine(angle=0, pen=pg.mkPen(th.grid, style=Qt.PenStyle.DashLine))
        for it in (self.range_bars, self.range_sel, self.range_lo, self.range_hi):
            self.rangePlot.addItem(it)
        self.range_bars.setToolTip("")

        self.rangePlot.setMinimumHeight(90)
        self.rangePlot.setToolTip(
            "Each bar spans one output channel's weights (min to max); dashed: the whole "
            "tensor's range. Channels much narrower than the tensor waste a per-tensor grid."
        )
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.statsLabel)

        self.logYCheck.toggled.connect(self._on_log)
        self.compareQuantizerCombo.currentIndexChanged.connect(self.request_update)
        self.channelSpin.valueChanged.connect(self.request_update)
        session.selection_changed.connect(self.request_update)
        session.config_changed.connect(self.request_update)
        session.model_changed.connect(self._on_model)
        self._clear()  # before any model: the empty, labelled state

    def apply_theme(self) -> None:
        """Re-colour every item for the current plot theme (light/dark switch)."""
        th = current_theme()
        style_plot(self.plot, "weight value", "count")
        style_plot(self.rangePlot, "output channel", "weight")
        self.hist_item.setBrush(pg.mkBrush(*th.hist))
        self.hist_item.setPen(pg.mkPen(th.hist_line, width=1))
        for it in (self.clip_left, self.clip_right):
            it.setBrush(pg.mkBrush(*th.clip))
        self.range_bars.setOpts(brush=pg.mkBrush(*th.hist))
        self.range_sel.setOpts(brush=pg.mkBrush(th.accent))
        for line in (self.range_lo, self.range_hi):
            line.setPen(pg.mkPen(th.grid, style=Qt.PenStyle.DashLine))
        if self.data is not None:
            self._show(self.data)

    # -- requests --------------------------------------------------------------------------
    def _on_model(self, *_: Any) -> None:
        self.runner.cancel()
        self.request_update()

    def _on_log(self, on: bool) -> None:
        self.plot.getPlotItem().setLogMode(False, on)
        self.hist_item.setFillLevel(math.log10(LOG_FLOOR) if on else 0)
        if self.data is not None:
            self.hist_item.setData(self.data.edges, self._hist_y(self.data))
            self._draw_grids(self.data)
            self._draw_after(self.data)
            self._fit_view(self.data)

    def current_fqn(self) -> str | None:
        sel = self.session.selection
        return sel[0] if sel and self.session.handle is not None else None

    def request_update(self, *_: Any) -> None:
        """Recompute for the selected layer: inline if small, else in the worker."""
        fqn = self.current_fqn()
        if fqn is None:
            self.runner.cancel()
            self._clear()
            return
        ctl = self.controller
        spec = self.session.config.resolve(fqn).weight
        name = self.session.current_name  # a fine-tuned configuration: its own weights
        compare = self.compareQuantizerCombo.currentData()
        channel = self.channelSpin.value()
        if fqn != self._fqn or not self.channelSpin.isEnabled():
            channel = 0  # a new layer, or rows appearing: show one row's grid, not "all"
        n = ctl.weight_numel(fqn)

        def job() -> Any:
            with torch_threads(1):  # leave a core to the GUI thread
                d = ctl.layer_view(fqn, compare, channel, spec, name)
                d.extra["after"] = ctl.after_view(fqn, channel, spec)
                return d
            yield  # a generator: the runner can drop it at once when stale

        if n > INLINE_LIMIT:
            self.computing.emit(True)
            self.statsLabel.setText(f"<i>Quantizing {fqn} ({n:,} values)…</i>")
            self.runner.start(f"histogram {fqn}", job)
        else:
            self.runner.run_inline(f"histogram {fqn}", job)

    # -- drawing ---------------------------------------------------------------------------
    def _clear(self) -> None:
        self.data = None
        self._fqn = None
        self.hist_item.setData([0.0, 1.0], [0.0])
        self.grid_item.setData([], [])
        self.compare_item.setData([], [])
        self.after_item.setData([], [])
        self.after_grid_item.setData([], [])
        self.clip_left.setVisible(False)
        self.clip_right.setVisible(False)
        # an empty, labelled state: plain 0..1 axes (an empty range of -0.5..0.5 read
        # "count (x0.001)" from -400 to 400), no bars or range lines of an earlier layer
        none = self.session.handle is None
        set_fitted_title(self.plot, NO_MODEL if none else "Select a layer", "10pt")
        self.plot.getPlotItem().getViewBox().setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
        self.range_bars.setOpts(x=[], y0=[], y1=[], width=0.8)
        self.range_sel.setVisible(False)
        self.range_lo.setVisible(False)
        self.range_hi.setVisible(False)
        self.rangePlot.getPlotItem().getViewBox().setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
        self.statsLabel.setText("")
        self.legend.setVisible(False)  # it named the last layer's grid under "Select a layer"

    def level_count(self) -> int:
        """Number of grid lines drawn (levels of the shown row)."""
        x = self.grid_item.xData
        return 0 if x is None else len(x) // 2

    def compare_level_count(self) -> int:
        x = self.compare_item.xData
        return 0 if x is None else len(x) // 2

    def after_data(self) -> HistData | None:
        """The "after transforms" overlay shown (None when there is none)."""
        return None if self.data is None else self.data.extra.get("after")

    def after_level_count(self) -> int:
        x = self.after_grid_item.xData
        return 0 if x is None else len(x) // 2

    def _fit_view(self, d: HistData) -> None:
        """Data and grid fill the lower part; the top quarter stays free for the legend, so
        the legend never covers a bar."""
        vb = self.plot.getPlotItem().getViewBox()
        top = float(d.counts.max()) if d.counts.size else 1.0
        x0, x1 = float(d.edges[0]), float(d.edges[-1])
        after = d.extra.get("after")
        if after is not None:
            top = max(top, float(after.counts.max()) if after.counts.size else 0.0)
            x0, x1 = min(x0, float(after.edges[0])), max(x1, float(after.edges[-1]))
        pad = 0.02 * (x1 - x0 if x1 > x0 else 1.0)
        vb.setXRange(x0 - pad, x1 + pad, padding=0)
        if self.logYCheck.isChecked():
            hi = max(top, 1.0) * 1.6
            vb.setYRange(
                math.log10(LOG_FLOOR),
                math.log10(hi) + 0.45 * math.log10(hi / LOG_FLOOR) + 0.1,
                padding=0,
            )
        else:
            vb.setYRange(0, top * 1.04 / 0.72, padding=0)

    def _grid_y(self, d: HistData) -> tuple[float, float, float]:
        top = float(d.counts.max()) if d.counts.size else 1.0
        if self.logYCheck.isChecked():
            return LOG_FLOOR, max(top, 1.0) * 1.6, max(top, 1.0) * 0.6
        return 0.0, top * 1.04, top * 0.7

    def _draw_after(self, d: HistData) -> None:
        """The overlay: the transformed (or rounded) weights and their grid."""
        a = d.extra.get("after")
        if a is None:
            self.after_item.setData([], [])
            self.after_grid_item.setData([], [])
            if self._after_in_legend:
                self.legend.removeItem(self.after_item)
                self.legend.removeItem(self.after_grid_item)
                self._after_in_legend = False
            return
        self.after_item.setData(a.edges, self._hist_y(a))
        q = a.main
        if q is None or (a.channel < 0 and q.rows > 1):
            self.after_grid_item.setData([], [])
        else:
            lo, _, mid = self._grid_y(d)
            x = np.repeat(q.levels, 2)
            y = np.empty_like(x)
            y[0::2] = lo
            y[1::2] = mid * 0.8
            self.after_grid_item.setData(x, y)
        if not self._after_in_legend:
            self.legend.addItem(self.after_item, "after")
            self.legend.addItem(self.after_grid_item, "grid after")
            self._after_in_legend = True
        label = a.extra.get("label", "after transforms")
        self.legend.getLabel(self.after_item).setText(label)
        n = 0 if q is None else len(q.levels)
        self.legend.getLabel(self.after_grid_item).setText(f"grid {label} ({n} levels)")

    def _hist_y(self, d: HistData) -> np.ndarray:
        if self.logYCheck.isChecked():
            return np.where(d.counts > 0, d.counts, LOG_FLOOR)
        return d.counts

    def _draw_grids(self, d: HistData) -> None:
        lo, hi, mid = self._grid_y(d)
        th = current_theme()
        for item, q in ((self.grid_item, d.main), (self.compare_item, d.compare)):
            if q is None or (d.channel < 0 and q.rows > 1):
                item.setData([], [])
                continue
            # many levels: thinner ink, so the histogram stays readable under the grid
            alpha = int(np.clip(255 * 16 / max(len(q.levels), 1), 45, 255))
            col = pg.mkColor(th.grid if item is self.grid_item else th.compare)
            col.setAlpha(alpha)
            style = Qt.PenStyle.SolidLine if item is self.grid_item else Qt.PenStyle.DashLine
            item.setPen(pg.mkPen(col, width=1.5 if len(q.levels) <= 16 else 1, style=style))
            x = np.repeat(q.levels, 2)
            y = np.empty_like(x)
            y[0::2] = lo
            y[1::2] = hi if item is self.grid_item else mid
            item.setData(x, y)

    def _show(self, d: HistData) -> None:
        if d is None or d.fqn != self.current_fqn():
            return
        self.computing.emit(False)
        self.data = d
        self._fqn = d.fqn
        self.hist_item.setData(d.edges, self._hist_y(d))
        self._draw_grids(d)
        self._draw_after(d)
        self._fit_view(d)
        # channel selector
        with QSignalBlocker(self.channelSpin):
            if d.rows > 1:
                self.channelSpin.setRange(-1, d.rows - 1)
                self.channelSpin.setPrefix(f"{d.row_kind} ")
                self.channelSpin.setValue(d.channel)
                self.channelSpin.setEnabled(True)
            else:
                self.channelSpin.setRange(-1, 0)
                self.channelSpin.setValue(-1)
                self.channelSpin.setEnabled(False)
        # clipped region: data beyond the grid's outermost levels
        xmin, xmax = float(d.edges[0]), float(d.edges[-1])
        q = d.main
        show_clip = q is not None and not (d.channel < 0 and q.rows > 1)
        if show_clip:
            lo, hi = q.clip
            self.clip_left.setRegion((xmin, lo))
            self.clip_right.setRegion((hi, xmax))
            self.clip_left.setVisible(xmin < lo)
            self.clip_right.setVisible(xmax > hi)
        else:
            self.clip_left.setVisible(False)
            self.clip_right.setVisible(False)
        # title, legend, numbers
        where = "" if d.channel < 0 else f", {d.row_kind} {d.channel} of {d.rows}"
        what = "fine-tuned weights" if d.extra.get("weights_tag") else "weights"
        set_fitted_title(self.plot, f"{d.fqn} — {d.numel:,} {what}{where}", "10pt")
        self._update_legend(d)
        self.statsLabel.setText(self._stats_html(d))
        self._fit_stats()
        self._update_range_plot(d)
        self.controller.record_layer_view(d)
        self.updated.emit(d)

    def _update_legend(self, d: HistData) -> None:
        self.legend.setVisible(True)
        lab = self.legend.getLabel(self.grid_item)
        if d.main is not None and d.channel < 0 and d.main.rows > 1:
            lab.setText(f"W{d.main.spec.short()}: {d.main.rows} grids (pick a {d.row_kind})")
        elif d.main is not None:
            lab.setText(f"grid W{d.main.spec.short()} ({len(d.main.levels)} levels)")
        elif d.error:
            lab.setText("grid: invalid spec")
        else:
            lab.setText("kept in float (no grid)")
        if d.compare is not None:
            if not self._compare_in_legend:
                self.legend.addItem(self.compare_item, "compare")
                self._compare_in_legend = True
            self.legend.getLabel(self.compare_item).setText(
                f"W{d.compare.spec.short()} ({len(d.compare.levels)} levels)"
            )
        elif self._compare_in_legend:
            self.legend.removeItem(self.compare_item)
            self._compare_in_legend = False

    def _fit_stats(self) -> None:
        """Three lines, or as many as the text wraps to: with a comparison or the weights
        after transforms, the second row's wrapped end was cut off at 1366 x 768."""
        lab = self.statsLabel
        h = max(self._stats_h, lab.heightForWidth(max(1, lab.width())))
        if h != lab.height():
            lab.setFixedHeight(h)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._fit_stats()

    def _stats_html(self, d: HistData) -> str:
        th = current_theme()
        if d.error:
            return f"<span style='color:{th.accent}'>Cannot quantize: {d.error}</span>"
        if d.main is None:
            return "Kept in float: no quantization error."
        rows = [
            f"<span style='color:{th.grid}'>■</span> <b>W{d.main.spec.short()}</b>: "
            f"{_fmt_q(d.main)}"
        ]
        if d.compare is not None:
            rows.append(
                f"<span style='color:{th.compare}'>■</span> "
                f"<b>W{d.compare.spec.short()}</b>: {_fmt_q(d.compare)}"
            )
        elif d.compare_error:
            rows.append(f"compare: {d.compare_error}")
        a = d.extra.get("after")
        if a is not None and a.main is not None:
            rows.append(
                f"<span style='color:{th.accent}'>■</span> <b>{a.extra.get('label')}</b>: "
                f"{_fmt_q(a.main)}"
            )
        scope = "whole layer" if d.main.rows == 1 else f"whole layer, {d.main.rows} scales"
        return "<br>".join(rows) + f"<br><small>errors over the {scope}</small>"

    def _update_range_plot(self, d: HistData) -> None:
        n = len(d.chan_min)
        x = np.arange(n)
        self.range_bars.setOpts(x=x, y0=d.chan_min, y1=d.chan_max, width=0.8)
        tensor_lo, tensor_hi = float(d.chan_min.min()), float(d.chan_max.max())
        self.range_lo.setValue(tensor_lo)
        self.range_hi.setValue(tensor_hi)
        self.range_lo.setVisible(True)
        self.range_hi.setVisible(True)
        sel = d.channel >= 0 and d.row_kind == "channel" and d.channel < n
        if sel:
            c = d.channel
            self.range_sel.setOpts(x=[c], y0=[d.chan_min[c]], y1=[d.chan_max[c]], width=0.8)
        self.range_sel.setVisible(sel)
        pi = self.rangePlot.getPlotItem()
        pi.setXRange(-1, max(n, 2), padding=0)
        span = tensor_hi - tensor_lo
        pi.setYRange(tensor_lo - 0.05 * span, tensor_hi + 0.05 * span, padding=0)
