"""The accuracy-vs-memory plot: every evaluated configuration as a point.

x: model size (MB; the top axis shows the compression vs float), y: the metric, labelled
with its name (accuracy, top-1 agreement, perplexity). The float baseline is a horizontal
line, the Pareto front a line through the non-dominated points in the metric's direction
(the lowest perplexity, the highest accuracy), sweeps are curves that grow point by point.
Perplexity is drawn on a log axis (points are placed at log10 of the value; the axis ticks
read the value itself). Hover shows a point's name and numbers;
clicking one emits :attr:`TradeoffPlot.entryClicked` (the main window makes it current).

Plain evaluations of configurations with model transforms or AdaRound / GPTQ rounding are
their own labelled group ("with transforms: cle+bias_correction", diamonds in their own
colour) apart from those without ("without transforms", circles), each with a legend entry;
a sweep with and without the remedies is two curves (see ``AppController.sweep_job``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from quantviz.core.units import human_bytes
from quantviz.gui.corner_legend import CornerLegend
from quantviz.gui.plot_style import ValueLogAxis, current_theme, style_plot
from quantviz.session import ResultEntry, Session

__all__ = ["WITHOUT", "TradeoffPlot", "describe_entry", "evaluation_group"]

#: the legend name of the evaluations without transforms / rounding (when others have them)
WITHOUT = "without transforms"


def remedy_text(config: Any) -> str:
    """``transforms: cle+bias_correction``, ``rounding: gptq``, both, or ``""``."""
    from quantviz.core.spec import ModelConfig, transform_label
    from quantviz.eval.before_after import has_remedies, remedy_label

    if not isinstance(config, ModelConfig) or not has_remedies(config):
        return ""
    parts = []
    if config.transforms:
        parts.append(f"transforms: {transform_label(config.transforms)}")
    rounding = remedy_label(ModelConfig(default=config.default, overrides=config.overrides))
    if rounding:
        parts.append(f"rounding: {rounding}")
    return ", ".join(parts)


def evaluation_group(e: ResultEntry) -> str:
    """The legend group of a plain evaluation: ``with transforms: …`` or :data:`WITHOUT`;
    a sweep's point keeps its series."""
    if e.series != "evaluations":
        return e.series
    text = remedy_text(e.config)
    return f"with {text}" if text else WITHOUT


class CompressionAxis(pg.AxisItem):
    """Top axis: the compression factor of the bottom axis's model size."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.float_mb: float | None = None
        self.has_points = False

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        if not self.float_mb or not self.has_points:
            return ["" for _ in values]
        ratios = [self.float_mb / v if v > 0 else None for v in values]
        shown = [r for r in ratios if r is not None]
        # as many decimals as it takes for neighbouring ticks to read differently
        for digits in range(1, 5):
            texts = [f"{r:.{digits}f}" for r in shown]
            if len(set(texts)) == len(texts):
                break
        return [f"{r:.{digits}f}×" if r is not None else "" for r in ratios]


#: metrics drawn on a log y axis (they span orders of magnitude as bits shrink)
LOG_METRICS = ("perplexity",)


def _higher_is_better(r: Any) -> bool:
    flag = getattr(r, "higher_is_better", None)
    if isinstance(flag, bool):
        return flag
    from quantviz.data.metrics import higher_is_better

    return higher_is_better(getattr(r, "metric", None))


def describe_entry(e: ResultEntry) -> str:
    """Tooltip text of one point."""
    r = e.result
    hib = _higher_is_better(r)
    worse = r.baseline - r.value if hib else r.value - r.baseline
    direction = "" if hib else ", lower is better"
    with_remedy = e.series == "evaluations" and bool(remedy_text(e.config))
    lines = [
        f"{e.name}  ({e.series}{' ' + evaluation_group(e) if with_remedy else ''})",
        f"{r.metric}: {r.value:.4f}  (float {r.baseline:.4f}, worse by {worse:+.4f}{direction})",
        f"size: {human_bytes(r.model_bytes)}  ({r.compression:.2f}× smaller than float)",
    ]
    bops = getattr(r, "bops", None)
    if bops:
        lines.append(f"BOPs/sample: {bops:.3g}")
    return "\n".join(lines)


class TradeoffPlot(QWidget):
    """``tradeoffPlot``: mirrors ``session.results``; signals ``entryClicked(ResultEntry)``
    and ``pointsChanged(int)`` (number of points shown)."""

    entryClicked = Signal(object)
    pointsChanged = Signal(int)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.entries: list[ResultEntry] = []
        th = current_theme()
        self.top_axis = CompressionAxis("top")
        self.top_axis.enableAutoSIPrefix(False)
        self.unit, self.div = "MB", 1e6
        #: y is log10(metric) (perplexity); the left axis then ticks the metric itself
        self.log_y = False
        self.plot = pg.PlotWidget(
            self, axisItems={"top": self.top_axis, "left": ValueLogAxis("left")}
        )
        self.plot.setObjectName("tradeoffPlot")
        style_plot(self.plot, "model size", "metric", x_units=None)
        pi = self.plot.getPlotItem()
        pi.getAxis("bottom").enableAutoSIPrefix(False)
        pi.setLabel("bottom", "model size (MB)")
        pi.showAxis("top")
        pi.setLabel("top", "compression vs float")
        self.top_axis.setPen(th.foreground)
        self.top_axis.setTextPen(th.foreground)
        pi.setTitle("Accuracy vs memory — press F5 to evaluate", size="10pt")
        self.legend = pi.addLegend(offset=(-6, -6), labelTextSize="8pt")
        self.legend.setBrush(pg.mkBrush(th.background + "d0"))

        self.baseline = pg.InfiniteLine(
            angle=0,
            pen=pg.mkPen(th.baseline, width=1, style=Qt.PenStyle.DashLine),
            label="float",
            labelOpts={"position": 0.04, "color": th.baseline, "anchors": [(0, 1), (0, 1)]},
        )
        self.baseline.setVisible(False)
        pi.addItem(self.baseline)
        front_col = pg.mkColor(th.front)
        front_col.setAlpha(170)
        self.front = pg.PlotDataItem([], [], pen=pg.mkPen(front_col, width=4), name="Pareto front")
        self.front.setZValue(5)
        pi.addItem(self.front)
        self.curves: dict[str, pg.PlotDataItem] = {}
        #: legend samples of the evaluation groups (with / without transforms), by name
        self.groups: dict[str, pg.ScatterPlotItem] = {}
        self._series_order: list[str] = []
        self.scatter = pg.ScatterPlotItem(
            size=9,
            hoverable=True,
            hoverSize=13,
            tip=self._tip,
            hoverPen=pg.mkPen(th.foreground, width=2),
        )
        self.scatter.setZValue(10)
        pi.addItem(self.scatter)
        self.current = pg.ScatterPlotItem(
            size=18, pen=pg.mkPen(th.accent, width=2), brush=pg.mkBrush(None), symbol="o"
        )
        self.current.setZValue(11)
        pi.addItem(self.current)
        # the configurations open in the compare view: hollow squares with their names
        self.compared_names: list[str] = []
        self.compared = pg.ScatterPlotItem(
            size=16, pen=pg.mkPen(th.compare, width=2), brush=pg.mkBrush(None), symbol="s"
        )
        self.compared.setZValue(12)
        pi.addItem(self.compared)
        self.compared_labels: list[pg.TextItem] = []
        self.scatter.sigClicked.connect(self._on_click)
        # the legend moves to a corner free of points (it covered the only point), also
        # during a zoom or pan
        self.legend_place = CornerLegend(
            self.legend, pi.getViewBox(), (self.scatter, self.current, self.compared), self
        )

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot)
        # results often arrive in bursts: redraw once per event-loop pass
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)
        self._refresh_timer.timeout.connect(self.refresh)
        session.results_changed.connect(self._schedule_refresh)
        session.current_name_changed.connect(self._mark_current)
        session.model_changed.connect(self.refresh)
        self.refresh()  # before any model: the empty, labelled state

    def apply_theme(self) -> None:
        """Re-colour every item for the current plot theme (light/dark switch)."""
        th = current_theme()
        style_plot(self.plot, "model size", "metric")
        self.top_axis.setPen(th.foreground)
        self.top_axis.setTextPen(th.foreground)
        self.baseline.setPen(pg.mkPen(th.baseline, width=1, style=Qt.PenStyle.DashLine))
        self.baseline.label.setColor(th.baseline)
        front_col = pg.mkColor(th.front)
        front_col.setAlpha(170)
        self.front.setPen(pg.mkPen(front_col, width=4))
        self.current.setPen(pg.mkPen(th.accent, width=2))
        self.compared.setPen(pg.mkPen(th.compare, width=2))
        for name, curve in self.curves.items():
            curve.setPen(pg.mkPen(self._series_colour(name), width=1.5))
        self.refresh()

    # -- session -> plot ---------------------------------------------------------------------
    def _schedule_refresh(self, *_: Any) -> None:
        self._refresh_timer.start()

    def _series_colour(self, series: str) -> str:
        """Evaluations keep the first colour; every curve the next one in the order the
        curves appeared (stable: a curve keeps its colour while others come and go)."""
        th = current_theme()
        if series == "evaluations":
            return th.series[0]
        order = self._series_order
        if series not in order:
            order.append(series)
        return th.series[(1 + order.index(series)) % len(th.series)]

    def _group_style(self, group: str, series: str) -> tuple[str, str]:
        """Colour and symbol of a point: plain evaluations (and those without transforms)
        the first colour and circles, evaluations with transforms their group's colour and
        diamonds, sweep points their curve's colour and squares."""
        if series != "evaluations":
            return self._series_colour(series), "s"
        if group in ("evaluations", WITHOUT):
            return self._series_colour("evaluations"), "o"
        return self._series_colour(f"evaluations {group}"), "d"

    def _group_legend(self, groups: list[str]) -> None:
        """One legend entry per evaluation group shown (none when there is one plain group)."""
        for name in [n for n in self.groups if n not in groups]:
            self.legend.removeItem(self.groups.pop(name))
        for name in groups:
            c, symbol = self._group_style(name, "evaluations")
            item = self.groups.get(name)
            if item is None:
                item = pg.ScatterPlotItem(size=9)
                self.groups[name] = item
                self.legend.addItem(item, name)
            item.setSymbol(symbol)
            item.setBrush(pg.mkBrush(c))
            item.setPen(pg.mkPen(c))

    def legend_labels(self) -> list[str]:
        """The legend's entries as shown (evaluation groups, curves, the Pareto front)."""
        return [label.text for _sample, label in self.legend.items]

    def _curve(self, name: str) -> pg.PlotDataItem:
        curve = self.curves.get(name)
        if curve is None:
            c = self._series_colour(name)
            curve = pg.PlotDataItem([], [], pen=pg.mkPen(c, width=1.5), name=name)
            self.plot.getPlotItem().addItem(curve)
            self.curves[name] = curve
        return curve

    def _y(self, v: float) -> float:
        """Plot coordinate of metric value ``v`` (log10 on a log axis)."""
        return math.log10(v) if self.log_y else v

    def refresh(self, *_: Any) -> None:
        """Redraw from ``session.results`` (items updated with setData, never rebuilt)."""
        entries = [e for e in self.session.results if _plottable(e)]
        self.entries = entries
        pi = self.plot.getPlotItem()
        last = entries[-1].result if entries else None
        metric = str(getattr(last, "metric", "") or "")
        hib = _higher_is_better(last) if last is not None else True
        base = self.session.baseline
        self.log_y = (
            metric in LOG_METRICS
            and all(e.value > 0 for e in entries)
            and (base is None or base > 0)
        )
        pi.getAxis("left").setLogMode(False, self.log_y)
        h = self.session.handle
        ref = h.float_bytes if h is not None else max((e.model_bytes for e in entries), default=1e6)
        self.unit, self.div = ("kB", 1e3) if ref < 1e6 else ("MB", 1e6)
        pi.setLabel("bottom", f"model size ({self.unit})")
        spots = []
        evals = [evaluation_group(e) for e in entries if e.series == "evaluations"]
        split = any(g != WITHOUT for g in evals)  # else one plain group, no legend entry
        for i, e in enumerate(entries):
            group = evaluation_group(e) if split else e.series
            c, symbol = self._group_style(group, e.series)
            spots.append(
                {
                    "pos": (e.model_bytes / self.div, self._y(e.value)),
                    "data": i,
                    "brush": pg.mkBrush(c),
                    "pen": pg.mkPen(c),
                    "symbol": symbol,
                }
            )
        self.scatter.setData(spots)
        self._group_legend(list(dict.fromkeys(evals)) if split else [])
        # one curve per sweep series, in order of size
        by_series: dict[str, list[ResultEntry]] = {}
        for e in entries:
            if e.series != "evaluations":
                by_series.setdefault(e.series, []).append(e)
        for name, items in by_series.items():
            items = sorted(items, key=lambda e: e.model_bytes)
            x = np.array([e.model_bytes / self.div for e in items])
            y = np.array([self._y(e.value) for e in items])
            self._curve(name).setData(x, y)
        for name in [n for n in self.curves if n not in by_series]:
            curve = self.curves.pop(name)  # a removed curve leaves the plot and its legend
            self.plot.getPlotItem().removeItem(curve)
            self.legend.removeItem(curve)
        # Pareto front
        if len(entries) >= 2:
            from quantviz.eval import pareto

            front = pareto(entries, hib)
            self.front.setData(
                [e.model_bytes / self.div for e in front], [self._y(e.value) for e in front]
            )
        else:
            self.front.setData([], [])
        self._fit_ranges(entries, base)
        # baseline and compression axis
        if base is not None:
            # shown first: a hidden label ignores setFormat (pyqtgraph), so the text of an
            # earlier model ("float model 0.9806" on a perplexity plot) stayed
            self.baseline.setVisible(True)
            self.baseline.setValue(self._y(base))
            self.baseline.label.setFormat(f"float model {base:.4f}")
        else:
            self.baseline.setVisible(False)
        fb = None
        if entries:
            fb = getattr(entries[-1].result, "float_bytes", None)
        if fb is None and self.session.handle is not None:
            fb = self.session.handle.float_bytes
        self.top_axis.float_mb = None if fb is None else fb / self.div
        self.top_axis.has_points = bool(entries)
        self.top_axis.picture = None
        self.top_axis.update()
        if entries:
            label = metric.replace("_", " ")
            if not hib:
                label += " (lower is better" + (", log scale)" if self.log_y else ")")
            pi.setLabel("left", label)
            pi.setTitle(
                f"{metric.replace('_', ' ')} vs model size — {len(entries)} point"
                + ("s" if len(entries) != 1 else ""),
                size="10pt",
            )
        else:  # before any result: what F5 will measure on this model
            lm = bool(getattr(self.session.handle, "is_causal_lm", False))
            pi.setLabel("left", "perplexity (lower is better)" if lm else "metric")
            what = "Perplexity" if lm else "Accuracy"
            todo = "press F5 to evaluate" if self.session.handle is not None else "no model loaded"
            pi.setTitle(f"{what} vs memory — {todo}", size="10pt")
        self._mark_current()
        self._mark_compared()
        self._place_legend()
        self.pointsChanged.emit(len(entries))

    @property
    def legend_corner(self) -> tuple[int, int]:
        """The corner the legend sits in (x, y anchor; 1 = right / bottom)."""
        return self.legend_place.corner

    def _place_legend(self, *_: Any) -> None:
        self.legend_place.place()

    def _fit_ranges(self, entries: list[ResultEntry], base: float | None) -> None:
        """Ranges that frame the points and the float line with a margin (one point gives a
        small window around it, not pyqtgraph's ±0.4 around any single value)."""
        vb = self.plot.getPlotItem().getViewBox()
        if not entries:  # a new model: its own float size, not the last model's axes
            h = self.session.handle
            fb = (h.float_bytes / self.div) if h is not None else 1.0
            vb.setRange(xRange=(0.0, fb * 1.05), yRange=(0.0, 1.05), padding=0)
            return
        ys = [self._y(e.value) for e in entries] + ([self._y(base)] if base is not None else [])
        xs = [e.model_bytes / self.div for e in entries]
        lo, hi = min(ys), max(ys)
        pad = max(0.08 * (hi - lo), 0.01 * max(abs(hi), abs(lo)), 1e-3)
        vb.setYRange(lo - pad, hi + pad * 2.5, padding=0)  # room for the legend on top
        x0, x1 = min(xs), max(xs)
        xpad = max(0.08 * (x1 - x0), 0.05 * x1, 1e-6)
        vb.setXRange(max(x0 - xpad, 0.0), x1 + xpad, padding=0)

    def _mark_current(self, *_: Any) -> None:
        cur = [e for e in self.entries if e.name == self.session.current_name]
        if cur:
            e = cur[-1]
            self.current.setData([e.model_bytes / self.div], [self._y(e.value)])
        else:
            self.current.setData([], [])

    def set_compared(self, names: list[str]) -> None:
        """Mark the latest point of each configuration in ``names`` (the compare view's)."""
        self.compared_names = list(names)
        self._mark_compared()

    def _mark_compared(self) -> None:
        th = current_theme()
        pi = self.plot.getPlotItem()
        for t in self.compared_labels:
            pi.removeItem(t)
        self.compared_labels = []
        xs, ys = [], []
        for name in self.compared_names:
            mine = [e for e in self.entries if e.name == name and e.series == "evaluations"]
            mine = mine or [e for e in self.entries if e.name == name]
            if not mine:
                continue
            e = mine[-1]
            x, y = e.model_bytes / self.div, self._y(e.value)
            xs.append(x)
            ys.append(y)
            label = pg.TextItem(name, color=th.compare, anchor=(0, 1))
            label.setPos(x, y)
            label.setZValue(13)
            pi.addItem(label)
            self.compared_labels.append(label)
        self.compared.setData(xs, ys)

    def compared_count(self) -> int:
        """Number of compared configurations marked on the plot."""
        return len(self.compared.data)

    def point_count(self) -> int:
        return len(self.scatter.data)

    # -- interaction --------------------------------------------------------------------------
    def _tip(self, x: float, y: float, data: Any) -> str:
        if isinstance(data, int | np.integer) and 0 <= int(data) < len(self.entries):
            return describe_entry(self.entries[int(data)])
        return f"{x:.4g} {self.unit}, {10**y if self.log_y else y:.4f}"

    def _on_click(self, _item: Any, points: Any, *_: Any) -> None:
        if points is None or len(points) == 0:
            return
        i = points[0].data()
        if isinstance(i, int | np.integer) and 0 <= int(i) < len(self.entries):
            self.entryClicked.emit(self.entries[int(i)])

    def click_entry(self, index: int) -> None:
        """Act as if point ``index`` was clicked (keyboard access and tests)."""
        self.entryClicked.emit(self.entries[index])


def _plottable(e: ResultEntry) -> bool:
    try:
        return np.isfinite(e.model_bytes) and np.isfinite(e.value)
    except (AttributeError, TypeError, ValueError):
        return False
