"""The compare view's plots: one histogram panel per configuration and the per-layer
weight-SQNR bar chart (one bar series per configuration). Items are updated with
``setData`` / ``setOpts``; only a changed set of configurations adds or removes items."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from quantviz.core.layer_view import HistData
from quantviz.gui.plot_style import current_theme, histogram_item, style_plot

__all__ = ["ErrorBars", "HistPanel"]

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
        self.plot = pg.PlotWidget(parent)
        self.plot.setObjectName("compareErrorPlot")
        style_plot(self.plot, "layer", "weight SQNR (dB)")
        self.plot.getPlotItem().setTitle(BAR_TITLE, size="9pt")
        self.legend = self.plot.getPlotItem().addLegend(
            offset=(-6, 6), labelTextSize="8pt", colCount=4
        )
        self.plot.setMinimumHeight(180)
        self.items: dict[str, pg.BarGraphItem] = {}

    def set_data(
        self, fqns: list[str], series: dict[str, tuple[list[float | None], list[bool], str]]
    ) -> None:
        """``series``: name -> (SQNR per layer (None = unknown), kept float per layer, colour).

        Unknown, invalid (NaN) and float layers get no bar; exact ones (inf) reach the top mark.
        """
        pi = self.plot.getPlotItem()
        for n in list(self.items):
            if n not in series:
                item = self.items.pop(n)
                self.legend.removeItem(item)
                pi.removeItem(item)
        k = max(len(series), 1)
        width = 0.8 / k
        x0 = np.arange(len(fqns), dtype=float)
        finite = [
            v for vals, _, _ in series.values() for v in vals if v is not None and math.isfinite(v)
        ]
        cap = 1.1 * max(finite, default=50.0)  # where exact (inf dB) quantizations are drawn
        for i, (n, (vals, kept_float, colour)) in enumerate(series.items()):
            heights = []
            for v, fl in zip(vals, kept_float, strict=True):
                if v is not None and math.isinf(v) and not fl:
                    heights.append(cap)
                else:
                    heights.append(v if v is not None and math.isfinite(v) else 0.0)
            x = x0 + (i - (k - 1) / 2) * width
            brush = pg.mkBrush(colour)
            item = self.items.get(n)
            if item is None:
                item = pg.BarGraphItem(
                    x=x, height=heights, width=width, brush=brush, pen=pg.mkPen(None)
                )
                pi.addItem(item)
                self.legend.addItem(item, n)
                self.items[n] = item
            else:
                item.setOpts(x=x, height=heights, width=width, brush=brush)
        # x ticks: layer names, thinned so they do not overlap
        step = max(1, math.ceil(len(fqns) / 24))
        ticks = [(float(i), f) for i, f in enumerate(fqns) if i % step == 0]
        pi.getAxis("bottom").setTicks([ticks, []])
        if fqns:
            pi.setXRange(-0.6, len(fqns) - 0.4, padding=0)
            pi.setYRange(min(0.0, *finite) if finite else 0.0, cap * 1.3, padding=0)

    def heights(self, name: str) -> list[float]:
        return [float(v) for v in self.items[name].opts["height"]]

    def apply_theme(self) -> None:
        style_plot(self.plot, "layer", "weight SQNR (dB)")
