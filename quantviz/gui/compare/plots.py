"""The compare view's plots: one histogram panel per configuration (side by side in a
:class:`HistRow`, axes linked) and the per-layer weight-SQNR bar chart (one bar series per
configuration). Items are updated with ``setData`` / ``setOpts``; only a changed set of
configurations adds or removes items."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from quantviz.app.compare import BarChart
from quantviz.core.layer_view import HistData
from quantviz.gui.layer_axis import LayerAxis
from quantviz.gui.plot_style import current_theme, histogram_item, style_plot

__all__ = ["ErrorBars", "HistPanel", "HistRow", "column", "heading"]

BAR_TITLE = (
    "Per-layer weight error: SQNR in dB, higher is better "
    "(kept float: no bar; exact, ∞ dB: drawn at the top mark)"
)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class HistPanel:
    """One configuration's histogram plot: weights, grid (one pairs item) and a legend."""

    def __init__(self, name: str, colour: str) -> None:
        th = current_theme()
        self.name = name
        self.plot = pg.PlotWidget()
        self.plot.setObjectName(f"compareHistogram_{name}")
        self.plot.setMinimumWidth(220)
        style_plot(self.plot, "weight value", "count")
        pi = self.plot.getPlotItem()
        self.legend = pi.addLegend(offset=(-4, 4), labelTextSize="8pt", verSpacing=-4)
        self.legend.setBrush(pg.mkBrush(th.background + "d0"))
        self.hist = histogram_item(th)
        self.grid = pg.PlotDataItem([], [], connect="pairs", pen=pg.mkPen(colour, width=1.5))
        # a legend row without a sample: the SQNR / MSE of this configuration's grid
        self.stats = pg.PlotDataItem([], [], pen=None)
        pi.addItem(self.hist)
        pi.addItem(self.grid)
        self.legend.addItem(self.grid, "grid")
        self.legend.addItem(self.stats, "")
        self.colour = colour

    def show(self, d: HistData, top: float) -> None:
        self.hist.setData(d.edges, d.counts)
        q = d.main
        if q is None:
            self.grid.setData([], [])
            grid = "kept in float" if not d.error else "cannot quantize"
            stats = "no quantization error" if not d.error else _clip(d.error, 40)
            self.plot.setToolTip(d.error)
        else:
            n = len(q.levels)
            alpha = int(np.clip(255 * 16 / max(n, 1), 30, 255))
            col = pg.mkColor(self.colour)
            col.setAlpha(alpha)
            self.grid.setPen(pg.mkPen(col, width=1.5 if n <= 16 else 1))
            x = np.repeat(q.levels, 2)
            y = np.empty_like(x)
            y[0::2] = 0.0
            y[1::2] = top
            self.grid.setData(x, y)
            sq = "∞" if math.isinf(q.sqnr_db) else f"{q.sqnr_db:.1f}"
            row = f" · grid of row 0/{q.rows}" if q.rows > 1 else ""
            grid = f"W{q.spec.short()} · {n} levels"
            stats = f"SQNR {sq} dB · MSE {q.mse:.2g}"
            self.plot.setToolTip(
                f"{self.name}: grid of W{q.spec.short()} over the whole layer's weights"
                + (f"; per-{d.row_kind or 'row'} grids differ, row 0 is drawn" if row else "")
                + "; SQNR / MSE over the whole layer"
            )
        self.legend.getLabel(self.grid).setText(grid)
        self.legend.getLabel(self.stats).setText(stats)
        self.legend.updateSize()
        row = "" if q is None else row
        self.plot.getPlotItem().setTitle(f"<b>{self.name}</b>{row}", size="9pt")

    def grid_text(self) -> str:
        return self.legend.getLabel(self.grid).text

    def sqnr_text(self) -> str:
        return self.legend.getLabel(self.stats).text

    def title(self) -> str:
        return self.plot.getPlotItem().titleLabel.text


class ErrorBars:
    """``compareErrorPlot``: grouped bars, x = layers, one series per configuration."""

    def __init__(self, parent: QWidget | None = None) -> None:
        self.axis = LayerAxis("bottom")
        self.plot = pg.PlotWidget(parent, axisItems={"bottom": self.axis})
        self.plot.setObjectName("compareErrorPlot")
        style_plot(self.plot, "layer", "weight SQNR (dB)")
        self.plot.getPlotItem().setTitle(BAR_TITLE, size="9pt")
        self.legend = self.plot.getPlotItem().addLegend(
            offset=(-6, 6), labelTextSize="8pt", colCount=4
        )
        self.plot.setMinimumHeight(180)
        self.items: dict[str, pg.BarGraphItem] = {}

    def set_data(self, chart: BarChart, colours: dict[str, str]) -> None:
        """One bar series per configuration of ``chart`` (heights computed by
        :func:`quantviz.app.compare.bar_chart`: unknown, invalid and float layers get no
        bar, exact ones reach ``chart.cap``), coloured by ``colours``."""
        pi = self.plot.getPlotItem()
        for n in list(self.items):
            if n not in chart.heights:
                item = self.items.pop(n)
                self.legend.removeItem(item)
                pi.removeItem(item)
        fqns = list(chart.fqns)
        k = max(len(chart.heights), 1)
        width = 0.8 / k
        x0 = np.arange(len(fqns), dtype=float)
        for i, (n, heights) in enumerate(chart.heights.items()):
            x = x0 + (i - (k - 1) / 2) * width
            brush = pg.mkBrush(colours[n])
            item = self.items.get(n)
            if item is None:
                item = pg.BarGraphItem(
                    x=x, height=list(heights), width=width, brush=brush, pen=pg.mkPen(None)
                )
                pi.addItem(item)
                self.legend.addItem(item, n)
                self.items[n] = item
            else:
                item.setOpts(x=x, height=list(heights), width=width, brush=brush)
        # x ticks: short layer names, thinned to the axis' width so they do not overlap
        self.axis.set_names(fqns)
        if fqns:
            pi.setXRange(-0.6, len(fqns) - 0.4, padding=0)
            pi.setYRange(chart.ymin, chart.cap * 1.3, padding=0)

    def heights(self, name: str) -> list[float]:
        return [float(v) for v in self.items[name].opts["height"]]

    def apply_theme(self) -> None:
        style_plot(self.plot, "layer", "weight SQNR (dB)")


def heading(text: str) -> QLabel:
    """A bold rich-text label heading a part of the compare view."""
    lab = QLabel(text)
    lab.setTextFormat(Qt.TextFormat.RichText)
    f = lab.font()
    f.setBold(True)
    lab.setFont(f)
    return lab


class HistRow(QWidget):
    """The selected layer's histogram under each configuration: a title (``histTitle``)
    over one :class:`HistPanel` per configuration, x and y axes linked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = heading("Select a layer")
        self.title.setObjectName("compareHistTitle")
        self.row = QHBoxLayout()
        self.row.setContentsMargins(0, 0, 0, 0)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addLayout(self.row, 1)
        self.panels: list[HistPanel] = []

    def set_names(self, names: list[str], colours: dict[str, str]) -> None:
        """One panel per name (kept when the names are the same; colours follow)."""
        if [p.name for p in self.panels] == names:
            for p in self.panels:
                p.colour = colours[p.name]
            return
        self.clear()
        self.panels = [HistPanel(n, colours[n]) for n in names]
        for i, p in enumerate(self.panels):
            self.row.addWidget(p.plot, 1)
            if i:
                p.plot.setXLink(self.panels[0].plot)
                p.plot.setYLink(self.panels[0].plot)

    def clear(self) -> None:
        for p in self.panels:
            self.row.removeWidget(p.plot)
            p.plot.deleteLater()
        self.panels = []

    def show_layer(self, fqn: str, items: list[tuple[str, HistData]]) -> None:
        """Draw ``(name, HistData)`` of layer ``fqn`` in the panels of those names."""
        by_name = dict(items)
        top = max((float(d.counts.max()) for _, d in items if d.counts.size), default=1.0) * 1.04
        for p in self.panels:
            d = by_name.get(p.name)
            if d is not None:
                p.show(d, top)
        if items:
            # every panel explicitly: a link made before the layout placed the plots may
            # have lined the views up by their (then overlapping) screen positions
            d0 = items[0][1]
            for p in self.panels:
                pi = p.plot.getPlotItem()
                pi.setXRange(float(d0.edges[0]), float(d0.edges[-1]), padding=0.02)
                pi.setYRange(0, top * 1.25, padding=0)  # room for the legend
        n = items[0][1].numel if items else 0
        self.title.setText(
            f"<b>{fqn}</b> — {n:,} weights and the grid under each configuration "
            "(x and y axes linked)"
        )


def column(*widgets: QWidget, stretch: int = -1) -> QWidget:
    """A margin-less vertical box of ``widgets``; ``widgets[stretch]`` takes the room."""
    w = QWidget()
    lay = QVBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    stretch %= len(widgets)
    for i, x in enumerate(widgets):
        lay.addWidget(x, 1 if i == stretch else 0)
    return w
