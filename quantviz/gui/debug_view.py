"""Where the error comes from: the error-propagation strip plot and the proxy ranking.

A dock under the trade-off plot with two tabs:

- **Error propagation** — one group per quantizable layer in execution order: the output
  SQNR (dB, higher is better) with only that layer quantized (isolated) and with everything
  up to it quantized (cumulative) as two bar series. Layers where the cumulative error jumps
  (or whose isolated error is an outlier; :mod:`quantviz.eval.debug`) get a red bar and a
  marker. Hover shows the layer and its numbers; clicking a bar selects that layer in the
  layer table. A configuration with transforms or AdaRound / GPTQ rounding is also run
  without them: its isolated and cumulative SQNR are two more series (lines with markers
  over the bars, named "... without cle+bias_correction"), so the strip shows what the
  remedy changed per layer.
- **Proxies** — each sensitivity proxy's ranking of the layers beside the measured metric
  drop of quantizing that layer alone, with each proxy's Spearman rho (the best in bold):
  which proxy to trust on this model.

Both run as controller jobs in the job worker (Run > Debug error propagation, Run > Rank
sensitivity proxies), with the one progress bar and Cancel. :func:`install_debug_view`
wires it into the main window.
"""

from __future__ import annotations

import math
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, Qt, Signal
from PySide6.QtGui import QAction, QFont
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from quantviz.app.compare import scheme_text
from quantviz.core.spec import LayerConfig
from quantviz.gui.layer_axis import LayerAxis, short_names
from quantviz.gui.layout import give_room, keep_room
from quantviz.gui.plot_style import current_theme, style_plot

__all__ = ["DebugView", "LayerAxis", "install_debug_view", "short_names"]

_FLAG = "#e03131"
_WIDTH = 0.38


def _fmt_db(v: float) -> str:
    if math.isnan(v):
        return "-"
    return "exact" if v == math.inf else f"{v:.1f} dB"


class DebugView(QTabWidget):
    """``debugView``. Signals: ``layerClicked(fqn)``, ``runDebugRequested()``,
    ``runProxiesRequested()``."""

    layerClicked = Signal(str)
    runDebugRequested = Signal()
    runProxiesRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("debugView")
        self.result: Any = None
        #: the same configuration without its transforms / rounding (None: not run)
        self.plain: Any = None
        self.remedy = ""
        self.report: Any = None
        self.fqns: list[str] = []
        self.hover_text = ""

        # -- error propagation tab ---------------------------------------------------------
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(2, 2, 2, 2)
        top = QHBoxLayout()
        self.summaryLabel = QLabel("Run > Debug error propagation: per-layer output error")
        self.summaryLabel.setObjectName("debugSummary")
        self.summaryLabel.setWordWrap(True)
        self.runButton = QPushButton("Run")
        self.runButton.setObjectName("debugRunButton")
        self.runButton.setToolTip("Error propagation of the current configuration")
        self.runButton.clicked.connect(self.runDebugRequested)
        top.addWidget(self.summaryLabel, 1)
        top.addWidget(self.runButton)
        lay.addLayout(top)
        self.axis = LayerAxis("bottom")
        self.plot = pg.PlotWidget(axisItems={"bottom": self.axis})
        self.plot.setObjectName("debugPlot")
        style_plot(self.plot, "layer (execution order)", "output SQNR (dB)")
        pi = self.plot.getPlotItem()
        pi.setMouseEnabled(x=False, y=False)
        self.legend = pi.addLegend(offset=(-6, 6), labelTextSize="8pt")
        self.legend.setColumnCount(3)  # one row: the bars keep the plot's height
        th = current_theme()
        self.iso = pg.BarGraphItem(x=[], height=[], width=_WIDTH, brush=th.series[1])
        self.cum = pg.BarGraphItem(x=[], height=[], width=_WIDTH, brush=th.series[0])
        self.flags = pg.ScatterPlotItem(
            size=12, symbol="t", brush=pg.mkBrush(_FLAG), pen=pg.mkPen(_FLAG)
        )
        # the same configuration without its transforms / rounding (lines over the bars)
        self.iso_plain = pg.PlotDataItem(
            [],
            [],
            pen=pg.mkPen(th.foreground, width=1.2, style=Qt.PenStyle.DotLine),
            symbol="o",
            symbolSize=8,
            symbolBrush=pg.mkBrush(th.background),
            symbolPen=pg.mkPen(th.foreground, width=1.5),
        )
        self.cum_plain = pg.PlotDataItem(
            [],
            [],
            pen=pg.mkPen(th.baseline, width=1.5, style=Qt.PenStyle.DashLine),
            symbol="d",
            symbolSize=8,
            symbolBrush=pg.mkBrush(th.background),
            symbolPen=pg.mkPen(th.foreground, width=1.5),
        )
        for item in (self.iso, self.cum, self.flags, self.iso_plain, self.cum_plain):
            pi.addItem(item)
        self.iso_plain.setZValue(8)
        self.cum_plain.setZValue(9)
        self._legend_entries("")
        # on a filled box: the text is drawn over the bars
        self.hoverLabel = pg.TextItem("", anchor=(0, 1))
        self._style_hover(th)
        self.hoverLabel.setZValue(20)
        self.hoverLabel.hide()  # an empty label still draws its filled box
        pi.addItem(self.hoverLabel, ignoreBounds=True)
        self.plot.scene().sigMouseMoved.connect(self._on_move)
        self.plot.installEventFilter(self)  # the pointer leaving the plot hides the text
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        lay.addWidget(self.plot, 1)
        self.addTab(page, "Error propagation")

        # -- proxies tab -------------------------------------------------------------------
        page2 = QWidget()
        lay2 = QVBoxLayout(page2)
        lay2.setContentsMargins(2, 2, 2, 2)
        top2 = QHBoxLayout()
        self.rhoLabel = QLabel(
            "Run > Rank sensitivity proxies: each proxy's ranking vs the measured drop"
        )
        self.rhoLabel.setObjectName("proxyRhoLabel")
        self.rhoLabel.setWordWrap(True)
        self.proxiesButton = QPushButton("Run")
        self.proxiesButton.setObjectName("proxiesRunButton")
        self.proxiesButton.setToolTip(
            "Rank the layers by every proxy at the sensitivity bit-width and measure each "
            "layer alone"
        )
        self.proxiesButton.clicked.connect(self.runProxiesRequested)
        top2.addWidget(self.rhoLabel, 1)
        top2.addWidget(self.proxiesButton)
        lay2.addLayout(top2)
        self.proxyTable = QTableWidget(0, 0)
        self.proxyTable.setObjectName("proxyTable")
        self.proxyTable.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.proxyTable.verticalHeader().setVisible(False)
        self.proxyTable.setTextElideMode(Qt.TextElideMode.ElideLeft)  # keep a name's end
        self.proxyTable.setWordWrap(False)
        self.proxyTable.cellClicked.connect(self._on_proxy_row)
        lay2.addWidget(self.proxyTable, 1)
        self.addTab(page2, "Proxies")

    def _legend_entries(self, remedy: str) -> None:
        """The legend: the bars (of the config "with <remedy>" when there is one), the flags
        and, with a remedy, the two series without it."""
        self.legend.clear()
        tag = f" with {remedy}" if remedy else ""
        self.legend.addItem(self.iso, f"isolated{tag} (only this layer)")
        self.legend.addItem(self.cum, f"cumulative{tag} (up to this layer)")
        self.legend.addItem(self.flags, "flagged: cumulative jump / isolated outlier")
        if remedy:
            self.legend.addItem(self.iso_plain, f"isolated without {remedy}")
            self.legend.addItem(self.cum_plain, f"cumulative without {remedy}")

    def legend_labels(self) -> list[str]:
        """The legend's entries as shown."""
        return [label.text for _sample, label in self.legend.items]

    # -- theme -------------------------------------------------------------------------------
    def _style_hover(self, th: Any) -> None:
        self.hoverLabel.setColor(th.foreground)
        self.hoverLabel.fill = pg.mkBrush(th.background + "e8")
        self.hoverLabel.border = pg.mkPen(th.baseline)
        self.hoverLabel.update()

    def apply_theme(self) -> None:
        """Re-colour the plot for the current plot theme (light/dark switch)."""
        th = current_theme()
        style_plot(self.plot, "layer (execution order)", "output SQNR (dB)")
        self.iso.setOpts(brush=th.series[1])
        self.iso_plain.setPen(pg.mkPen(th.foreground, width=1.2, style=Qt.PenStyle.DotLine))
        self.iso_plain.setSymbolPen(pg.mkPen(th.foreground, width=1.5))
        self.iso_plain.setSymbolBrush(pg.mkBrush(th.background))
        self.cum_plain.setPen(pg.mkPen(th.baseline, width=1.5, style=Qt.PenStyle.DashLine))
        self.cum_plain.setSymbolPen(pg.mkPen(th.foreground, width=1.5))
        self.cum_plain.setSymbolBrush(pg.mkBrush(th.background))
        self._style_hover(th)
        if self.result is not None:
            self.show_debug(self.result, switch=False, plain=self.plain)
        else:
            self.cum.setOpts(brush=th.series[0])

    def eventFilter(self, obj: Any, ev: Any) -> bool:
        if obj is self.plot and ev.type() == QEvent.Type.Leave:
            self._hide_hover()
        return False

    def _hide_hover(self) -> None:
        self.hover_text = ""
        self.hoverLabel.setText("")
        self.hoverLabel.hide()

    # -- error propagation -------------------------------------------------------------------
    def clear(self, *_: Any) -> None:
        self.result = self.report = self.plain = None
        self.fqns = []
        self.axis.set_names([])
        self.iso.setOpts(x=[], height=[])
        self.cum.setOpts(x=[], height=[])
        self.iso_plain.setData([], [])
        self.cum_plain.setData([], [])
        self.remedy = ""
        self._legend_entries("")
        self.flags.setData([], [])
        self.hoverLabel.setText("")
        self.hoverLabel.hide()
        self.proxyTable.setRowCount(0)
        self.summaryLabel.setText("Run > Debug error propagation: per-layer output error")

    def show_debug(self, result: Any, switch: bool = True, plain: Any = None) -> None:
        """Draw a :class:`quantviz.eval.debug.DebugResult` (``switch``: show its tab);
        ``plain``: the result of the same configuration without its transforms and
        rounding, drawn as two more series."""
        from quantviz.eval.before_after import remedy_label

        self.result, self.plain = result, plain
        self.remedy = remedy_label(result.config) if plain is not None else ""
        self._legend_entries(self.remedy)
        layers = result.layers
        self.fqns = [lay.fqn for lay in layers]
        iso = [lay.isolated.sqnr_db for lay in layers]
        cum = [lay.cumulative.sqnr_db for lay in layers]
        by_fqn = {} if plain is None else {lay.fqn: lay for lay in plain.layers}
        p_iso = [by_fqn[f].isolated.sqnr_db if f in by_fqn else math.nan for f in self.fqns]
        p_cum = [by_fqn[f].cumulative.sqnr_db if f in by_fqn else math.nan for f in self.fqns]
        finite = [v for v in iso + cum + p_iso + p_cum if math.isfinite(v)]
        cap = (max(finite) if finite else 0.0) + 10.0  # exact layers: drawn above the rest
        iso_h = [cap if v == math.inf else (0.0 if math.isnan(v) else v) for v in iso]
        cum_h = [cap if v == math.inf else (0.0 if math.isnan(v) else v) for v in cum]
        p_iso_h = [cap if v == math.inf else (0.0 if math.isnan(v) else v) for v in p_iso]
        p_cum_h = [cap if v == math.inf else (0.0 if math.isnan(v) else v) for v in p_cum]
        th = current_theme()
        xs = list(range(len(layers)))
        if plain is not None:
            self.iso_plain.setData([x - _WIDTH / 2 for x in xs], p_iso_h)
            self.cum_plain.setData([x + _WIDTH / 2 for x in xs], p_cum_h)
        else:
            self.iso_plain.setData([], [])
            self.cum_plain.setData([], [])
            p_iso_h = p_cum_h = []
        self.iso.setOpts(
            x=[x - _WIDTH / 2 for x in xs], height=iso_h, width=_WIDTH, brush=th.series[1]
        )
        brushes = [pg.mkBrush(_FLAG if lay.flagged else th.series[0]) for lay in layers]
        self.cum.setOpts(
            x=[x + _WIDTH / 2 for x in xs], height=cum_h, width=_WIDTH, brushes=brushes
        )
        fx = [x for x, lay in zip(xs, layers, strict=True) if lay.flagged]
        fy = [max(iso_h[x], cum_h[x], 0.0) + 2.0 for x in fx]
        self.flags.setData(fx, fy)
        self.axis.set_names(self.fqns)
        lo = min([0.0, *iso_h, *cum_h, *p_iso_h, *p_cum_h])
        top = max([1.0, *iso_h, *cum_h, *p_iso_h, *p_cum_h])
        hi = top + max(5.0, 0.45 * (top - lo))  # room for the legend above the bars
        self.plot.getPlotItem().setRange(xRange=(-0.8, len(layers) - 0.2), yRange=(lo, hi))
        o = result.output
        flagged = ", ".join(result.flagged) or "none"
        self.summaryLabel.setText(
            f"{len(layers)} layers, {result.n_samples} samples. Output: KL {o.kl:.3g}, "
            f"SQNR {_fmt_db(o.sqnr_db)}, top-1 agreement {100 * o.top1_agreement:.1f}%. "
            f"Flagged: {flagged} (cumulative SQNR drops > {result.jump_threshold_db:g} dB, "
            f"or isolated SQNR > {result.outlier_db:g} dB below the median)."
        )
        if plain is not None:
            po = plain.output
            self.summaryLabel.setText(
                f"With {self.remedy}: " + self.summaryLabel.text() + f" Without {self.remedy}: "
                f"output SQNR {_fmt_db(po.sqnr_db)}, KL {po.kl:.3g}, top-1 agreement "
                f"{100 * po.top1_agreement:.1f}% (the lines with markers), flagged: "
                f"{', '.join(plain.flagged) or 'none'}."
            )
        if switch:
            self.setCurrentIndex(0)

    def describe(self, i: int) -> str:
        """Hover text of layer ``i``."""
        lay = self.result.layers[i]
        why = [w for w, on in (("jump", lay.jump), ("worst isolated", lay.worst_isolated)) if on]
        jump = "" if lay.jump_db is None else f"  (change {-lay.jump_db:+.1f} dB)"
        extra = []
        if self.plain is not None:
            p = next((q for q in self.plain.layers if q.fqn == lay.fqn), None)
            if p is not None:
                extra.append(
                    f"without {self.remedy}: isolated {_fmt_db(p.isolated.sqnr_db)}, "
                    f"cumulative {_fmt_db(p.cumulative.sqnr_db)}"
                )
        return "\n".join(
            [
                f"{lay.fqn}  {lay.scheme}" + (f"  — flagged: {', '.join(why)}" if why else ""),
                f"isolated:   SQNR {_fmt_db(lay.isolated.sqnr_db)}, MSE {lay.isolated.mse:.3g}, "
                f"cos {lay.isolated.cosine:.4f}",
                f"cumulative: SQNR {_fmt_db(lay.cumulative.sqnr_db)}{jump}, "
                f"MSE {lay.cumulative.mse:.3g}, cos {lay.cumulative.cosine:.4f}",
                *extra,
            ]
        )

    def bar_center(self, i: int, cumulative: bool = True) -> QPointF:
        """Scene position of the middle of layer ``i``'s bar (for tests and tools)."""
        x = i + (_WIDTH / 2 if cumulative else -_WIDTH / 2)
        rect = self.plot.getPlotItem().vb.viewRange()
        y_lo = max(rect[1][0], 0.0)
        h = self.cum.opts["height"][i] if cumulative else self.iso.opts["height"][i]
        return self.plot.getPlotItem().vb.mapViewToScene(QPointF(x, (y_lo + h) / 2))

    def _index_at(self, scene_pos: QPointF) -> int | None:
        if not self.fqns:
            return None
        vb = self.plot.getPlotItem().vb
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        p = vb.mapSceneToView(scene_pos)
        i = round(p.x())
        if 0 <= i < len(self.fqns) and abs(p.x() - i) <= _WIDTH + 0.05:
            return i
        return None

    def _on_move(self, pos: QPointF) -> None:
        i = self._index_at(pos)
        if i is None:
            self._hide_hover()
            return
        self.hover_text = self.describe(i)
        self.hoverLabel.setText(self.hover_text)
        self.hoverLabel.show()
        vb = self.plot.getPlotItem().vb
        p = vb.mapSceneToView(pos)
        (x0, x1), _ = vb.viewRange()
        self.hoverLabel.setAnchor((1, 1) if p.x() > (x0 + x1) / 2 else (0, 1))
        self.hoverLabel.setPos(p)

    def _on_click(self, ev: Any) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        i = self._index_at(ev.scenePos())
        if i is not None:
            self.layerClicked.emit(self.fqns[i])

    # -- proxies -----------------------------------------------------------------------------
    def show_proxies(self, report: Any) -> None:
        """Fill the table from a :class:`quantviz.eval.proxies.ProxyReport`: rows by measured
        drop, one rank column per proxy (the value in its tooltip)."""
        self.report = report
        names = list(report.values)
        rows = report.by_drop()
        ranks = {p: {c: i + 1 for i, c in enumerate(report.ranking(p))} for p in names}
        t = self.proxyTable
        t.clear()
        t.setColumnCount(3 + len(names))
        rho = report.spearman
        heads = ["layer", "scheme", "drop (pts)"] + [
            f"{p}\nρ {rho[p]:+.2f}" if math.isfinite(rho[p]) else f"{p}\nρ -" for p in names
        ]
        t.setHorizontalHeaderLabels(heads)
        t.setRowCount(len(rows))
        for r, c in enumerate(rows):
            m = report.measured[c]
            cells = [c[0], scheme_text(LayerConfig(weight=c[1])), f"{100 * m.drop:.2f}"]
            for j, text in enumerate(cells):
                t.setItem(r, j, QTableWidgetItem(text))
            for j, p in enumerate(names, start=3):
                it = QTableWidgetItem(str(ranks[p][c]))
                it.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                it.setToolTip(f"{p}: {report.values[p][c]:.4g} (rank {ranks[p][c]})")
                t.setItem(r, j, it)
        t.resizeColumnsToContents()
        for j in (0, 1):  # long layer names / schemes: elided (full text in the tooltip)
            t.setColumnWidth(j, min(t.columnWidth(j), 240 if j == 0 else 160))
        for r in range(t.rowCount()):
            for j in (0, 1):
                it = t.item(r, j)
                it.setToolTip(it.text())
        finite = {p: v for p, v in rho.items() if math.isfinite(v)}
        best = max(finite, key=lambda p: finite[p]) if finite else None
        if best is not None and finite[best] <= 0:  # no proxy ranks like the truth
            best = None
        if best is not None:
            j = 3 + names.index(best)
            head = t.horizontalHeaderItem(j)
            f = QFont(head.font())
            f.setBold(True)
            head.setFont(f)
        parts = [f"{p} {rho[p]:+.2f}" if math.isfinite(rho[p]) else f"{p} -" for p in names]
        if best is not None:
            trust = f"; trust {best} on this model"
        elif finite:
            trust = (
                "; no proxy ranks the layers like the measured drop here (every ρ ≤ 0): "
                "measure (Sensitivity) rather than trust a proxy"
            )
        else:
            trust = ""
        self.rhoLabel.setText(
            f"Spearman ρ of each proxy's ranking vs the measured drop ({report.metric}, "
            f"float {report.baseline:.4f}): " + ", ".join(parts) + trust
        )
        self.setCurrentIndex(1)

    def _on_proxy_row(self, row: int, _col: int) -> None:
        item = self.proxyTable.item(row, 0)
        if item is not None:
            self.layerClicked.emit(item.text())


def install_debug_view(win: Any) -> DebugView:
    """Add the dock (hidden until a run), the Run menu actions and the wiring to ``win``."""
    ctl = win.controller
    view = DebugView(win)
    dock = QDockWidget("Debug: error propagation and proxies", win)
    dock.setObjectName("debugDock")
    dock.setWidget(view)
    win.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    dock.hide()
    keep_room(win, dock)  # opened by a run or View > Panels: a readable height, not its minimum

    def run_debug() -> None:
        win.jobs.start_job(ctl.debug_job, "error propagation")

    def run_proxies() -> None:
        bits = win.jobs.sensitivity_bits[0]
        edit = getattr(win, "sensitivityBitsEdit", None)
        if edit is not None:
            b = win._bits(edit, "sensitivity bit-widths")
            if b is None:
                return
            bits = b[0]
        win.jobs.start_job(lambda: ctl.proxies_job(bits), "the proxy ranking")

    def done(kind: str) -> None:
        if kind == "debug" and ctl.debug_result is not None:
            view.show_debug(ctl.debug_result, plain=ctl.debug_plain)
            give_room(win, dock)
        elif kind == "proxies" and ctl.proxy_report is not None:
            view.show_proxies(ctl.proxy_report)
            give_room(win, dock)

    win.debugAction = QAction("Debug error propagation", win)
    win.debugAction.setObjectName("debugAction")
    win.debugAction.setToolTip(
        "Each layer's output error alone and with everything before it quantized"
    )
    win.debugAction.triggered.connect(run_debug)
    win.proxiesAction = QAction("Rank sensitivity proxies", win)
    win.proxiesAction.setObjectName("proxiesAction")
    win.proxiesAction.setToolTip(
        "MSE, output SQNR, KL, Fisher and Hessian trace vs the measured single-layer drop"
    )
    win.proxiesAction.triggered.connect(run_proxies)
    menu = getattr(win, "runMenu", None)
    if menu is not None:
        before = next((a for a in menu.actions() if a.isSeparator()), None)
        menu.insertActions(before, [win.debugAction, win.proxiesAction])  # type: ignore[arg-type]
    view.runDebugRequested.connect(run_debug)
    view.runProxiesRequested.connect(run_proxies)
    view.layerClicked.connect(lambda fqn: win.session.select([fqn]))
    win.jobDone.connect(done)
    win.session.model_changed.connect(view.clear)
    win.debugView, win.debugDock = view, dock
    return view
