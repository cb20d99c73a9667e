"""Compare named configurations side by side (``compareView``).

Pick two or more configurations in the checkable list and see, next to each other: their
metrics (from the session's results; size and compression are known without evaluating),
a per-layer table of each configuration's weight scheme and SQNR (cells that differ across
the configurations are tinted and bold), the selected layer's weight histogram and grid
under each configuration (linked x/y axes) and a bar chart of every layer's weight SQNR,
one bar series per configuration.

The view owns no state: it reads ``session`` and asks for changes through signals —
``copyRequested(fqn, source, target)`` (the main window pushes an undoable command) and
``evaluateRequested(name)``. Numbers come from :mod:`quantviz.core` through
:class:`quantviz.app.AppController` (``layer_view``, ``sqnr_job``).
"""

from __future__ import annotations

import math
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QPoint, QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QUndoCommand
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from quantviz.app import AppController
from quantviz.core.spec import LayerConfig
from quantviz.core.units import human_bytes
from quantviz.gui.compare_plots import ErrorBars, HistPanel
from quantviz.gui.histogram_view import INLINE_LIMIT
from quantviz.gui.plot_style import current_theme
from quantviz.gui.workers import Runner, torch_threads
from quantviz.session import ResultEntry, Session, copy_layer

__all__ = ["CompareView", "CopyLayerCommand", "scheme_text"]

#: missing SQNRs are computed on the GUI thread when the layers hold fewer elements than this
SQNR_INLINE_LIMIT = 2_000_000
METRIC_COLUMNS = ("Configuration", "Metric", "Drop vs float", "Size", "Compression", "BOPs", "")
M_NAME, M_METRIC, M_DROP, M_SIZE, M_COMP, M_BOPS, M_EVAL = range(len(METRIC_COLUMNS))


def scheme_text(cfg: LayerConfig) -> str:
    """``W4 kmeans ch`` (plus ``· A8 sym t`` when the input activation is quantized)."""
    w = f"W{cfg.weight.short()}" if cfg.weight is not None else "float"
    if cfg.activation is not None:
        w += f" · A{cfg.activation.short()}"
    return w


def _fmt_sqnr(v: float | None, kept_float: bool = False) -> str:
    if kept_float:
        return "float"
    if v is None:
        return "…"
    if math.isinf(v):
        return "∞ exact"
    if math.isnan(v):
        return "invalid"
    return f"{v:.1f}"


def _fmt_ops(n: float) -> str:
    for unit, f in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= f:
            return f"{n / f:.3g} {unit}BOPs"
    return f"{n:.0f} BOPs"


def _latest(entries: list[ResultEntry]) -> ResultEntry | None:
    evals = [e for e in entries if e.series == "evaluations"]
    return (evals or entries or [None])[-1]


class CopyLayerCommand(QUndoCommand):
    """Copy layer ``fqn``'s setting from configuration ``source`` to ``target`` (undoable;
    neither becomes current)."""

    def __init__(self, session: Session, fqn: str, source: str, target: str) -> None:
        super().__init__(f"copy {fqn} from {source} to {target}")
        for n in (source, target):
            if n not in session.configs:
                raise ValueError(f"config name: no configuration named {n!r}")
        if fqn not in session.fqns:
            raise ValueError(f"layer: no quantizable layer named {fqn!r}")
        self.session = session
        self.target = target
        self.before = session.configs[target]
        self.after = copy_layer(session.configs[source], self.before, [fqn])

    def _set(self, cfg: Any) -> None:
        if self.target not in self.session.configs:  # deleted since: nothing to restore
            self.setObsolete(True)
            return
        self.session.replace_config(self.target, cfg)

    def redo(self) -> None:
        self._set(self.after)

    def undo(self) -> None:
        self._set(self.before)


class CompareView(QWidget):
    """``compareView``: configurations side by side (see the module docstring).

    Signals: ``comparedChanged(list)`` (the compared names), ``copyRequested(fqn, source,
    target)``, ``evaluateRequested(name)``, ``updated()`` after the tables and the bar chart
    show a new state and ``histogramsUpdated()`` after the histograms do.
    """

    comparedChanged = Signal(list)
    copyRequested = Signal(str, str, str)
    evaluateRequested = Signal(str)
    updated = Signal()
    histogramsUpdated = Signal()

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("compareView")
        self.controller = controller
        self.session = session = controller.session
        self._checked: list[str] = []
        self._layer: str | None = None
        self._refreshing = False
        self.panels: list[HistPanel] = []
        self.diff_rows: set[str] = set()
        self.evaluate_buttons: dict[str, QPushButton] = {}
        self.sqnrRunner = Runner("compareSqnrRunner", self)
        self.sqnrRunner.yielded.connect(lambda item: self.controller.sqnr.record([item]))
        self.sqnrRunner.finished.connect(self._schedule)  # what was asked for meanwhile
        self.histRunner = Runner("compareHistRunner", self)
        self.histRunner.finished.connect(self._show_hists)

        # -- which configurations ---------------------------------------------------------
        self.configList = QListWidget(self)
        self.configList.setObjectName("compareConfigList")
        self.configList.setToolTip("Tick two or more configurations to compare them")
        self.configList.itemChanged.connect(self._on_item_changed)
        self.evaluateMissingButton = QPushButton("Evaluate the missing ones", self)
        self.evaluateMissingButton.setObjectName("evaluateMissingButton")
        self.evaluateMissingButton.setToolTip(
            "Evaluate every compared configuration without a result (one after another)"
        )
        self.evaluateMissingButton.clicked.connect(self._evaluate_missing)
        pick = QWidget(self)
        pl = QVBoxLayout(pick)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(_heading("Configurations (tick 2 or more)"))
        pl.addWidget(self.configList, 1)
        pl.addWidget(self.evaluateMissingButton)

        # -- metrics --------------------------------------------------------------------------
        self.metricsTable = QTableWidget(0, len(METRIC_COLUMNS), self)
        self.metricsTable.setObjectName("compareMetricsTable")
        self.metricsTable.setHorizontalHeaderLabels(list(METRIC_COLUMNS))
        self.metricsTable.verticalHeader().setVisible(False)
        self.metricsTable.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.metricsTable.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        hh = self.metricsTable.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setStretchLastSection(True)
        metrics = QWidget(self)
        ml = QVBoxLayout(metrics)
        ml.setContentsMargins(0, 0, 0, 0)
        ml.addWidget(_heading("Metrics (latest evaluation of each configuration)"))
        ml.addWidget(self.metricsTable, 1)
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(pick)
        top.addWidget(metrics)
        top.setSizes([260, 1000])

        # -- per-layer table + copy ----------------------------------------------------------
        self.layerTable = QTableWidget(0, 1, self)
        self.layerTable.setObjectName("compareLayerTable")
        self.layerTable.verticalHeader().setVisible(False)
        self.layerTable.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.layerTable.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.layerTable.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.layerTable.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.layerTable.customContextMenuRequested.connect(self._context_menu)
        self.layerTable.itemSelectionChanged.connect(self._on_row_selected)
        self.layerTable.setToolTip(
            "Tinted bold cells: the layer's scheme differs across the configurations. "
            "Right-click a row to copy its setting from one configuration to another."
        )
        self.layerTable.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.sourceCombo = QComboBox(self)
        self.sourceCombo.setObjectName("copySourceCombo")
        self.targetCombo = QComboBox(self)
        self.targetCombo.setObjectName("copyTargetCombo")
        self.copyButton = QPushButton("Copy", self)
        self.copyButton.setObjectName("copyLayerButton")
        self.copyButton.setToolTip("Undoable (Ctrl+Z)")
        self.copyButton.clicked.connect(self._copy_clicked)
        self.sourceCombo.currentIndexChanged.connect(self._update_copy_button)
        self.targetCombo.currentIndexChanged.connect(self._update_copy_button)
        copy_row = QHBoxLayout()
        copy_row.addWidget(QLabel("from", self))
        copy_row.addWidget(self.sourceCombo, 1)
        copy_row.addWidget(QLabel("to", self))
        copy_row.addWidget(self.targetCombo, 1)
        copy_row.addWidget(self.copyButton, 2)
        layers = QWidget(self)
        ll = QVBoxLayout(layers)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(_heading("Per layer: scheme and weight SQNR (dB)"))
        ll.addWidget(self.layerTable, 1)
        ll.addLayout(copy_row)

        # -- histograms of the selected layer ----------------------------------------------
        self.histTitle = _heading("Select a layer")
        self.histTitle.setObjectName("compareHistTitle")
        self.histRow = QHBoxLayout()
        self.histRow.setContentsMargins(0, 0, 0, 0)
        hists = QWidget(self)
        hl = QVBoxLayout(hists)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.addWidget(self.histTitle)
        hl.addLayout(self.histRow, 1)
        middle = QSplitter(Qt.Orientation.Horizontal)
        middle.addWidget(layers)
        middle.addWidget(hists)
        middle.setSizes([620, 860])

        # -- per-layer error bars ------------------------------------------------------------
        self.bars = ErrorBars(self)
        self.errorPlot = self.bars.plot
        self.bar_items = self.bars.items

        main = QSplitter(Qt.Orientation.Vertical)
        main.addWidget(top)
        main.addWidget(middle)
        main.addWidget(self.errorPlot)
        main.setSizes([165, 455, 260])
        for i in range(3):
            main.setCollapsible(i, False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(main)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._timed_refresh)
        self._hist_due = False
        for sig in (
            session.configs_changed,
            session.config_changed,
            session.current_name_changed,
        ):
            sig.connect(self._schedule_all)
        session.results_changed.connect(self._schedule)
        controller.sqnr.changed.connect(self._on_metrics)
        session.model_changed.connect(self._on_model)
        self._sync_list()

    # -- public API ---------------------------------------------------------------------------
    def compared(self) -> list[str]:
        """The compared configuration names, in the session's order."""
        return [n for n in self.session.config_names if n in self._checked]

    def set_compared(self, names: list[str]) -> None:
        """Compare ``names`` (unknown names are an error naming them)."""
        unknown = [n for n in names if n not in self.session.configs]
        if unknown:
            raise ValueError(f"config name: no configuration named {', '.join(unknown)}")
        self._checked = list(names)
        self._sync_list()
        self.refresh(histograms=True)
        self.comparedChanged.emit(self.compared())

    def layer(self) -> str | None:
        """The layer whose histograms are shown."""
        return self._layer

    def select_layer(self, fqn: str) -> None:
        """Show layer ``fqn``'s histograms (and select its row)."""
        if fqn not in self.session.fqns:
            raise ValueError(f"layer: no quantizable layer named {fqn!r}")
        self._layer = fqn
        self._select_row(fqn)
        self._update_copy_button()
        self.refresh_histograms()

    def copy_actions(self, fqn: str) -> list[tuple[str, str, str]]:
        """``(text, source, target)`` for every compared pair where ``fqn`` differs."""
        names = self.compared()
        out = []
        for a in names:
            for b in names:
                if a != b and self._resolve(a, fqn) != self._resolve(b, fqn):
                    out.append((f"Copy {fqn} from {a} to {b}", a, b))
        return out

    def request_copy(self, fqn: str, source: str, target: str) -> None:
        """Ask for layer ``fqn``'s setting in ``source`` to be copied to ``target``."""
        self.copyRequested.emit(fqn, source, target)

    def histogram_plots(self) -> list[pg.PlotWidget]:
        return [p.plot for p in self.panels]

    def cell_text(self, fqn: str, name: str, what: str = "scheme") -> str:
        """The per-layer table's text for layer ``fqn`` and config ``name`` (scheme/sqnr)."""
        row = self._row_of(fqn)
        col = self._column_of(name, what)
        item = self.layerTable.item(row, col)
        return "" if item is None else item.text()

    def cell_item(self, fqn: str, name: str, what: str = "scheme") -> QTableWidgetItem | None:
        return self.layerTable.item(self._row_of(fqn), self._column_of(name, what))

    # -- session -> view -----------------------------------------------------------------------
    def _on_model(self, *_: Any) -> None:
        self.sqnrRunner.cancel()
        self.histRunner.cancel()
        self._layer = None
        self._checked = []
        self._schedule_all()

    def _on_metrics(self, *_: Any) -> None:
        if not self._refreshing:
            self._schedule()

    def _schedule(self, *_: Any) -> None:
        self._timer.start()

    def _schedule_all(self, *_: Any) -> None:
        self._hist_due = True
        self._timer.start()

    def _timed_refresh(self) -> None:
        hist, self._hist_due = self._hist_due, False
        if self.isVisible():  # hidden: showEvent refreshes everything
            self.refresh(histograms=hist)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self._sync_list()
        self.refresh(histograms=True)

    def _sync_list(self) -> None:
        s = self.session
        names = s.config_names
        self._checked = [n for n in self._checked if n in s.configs]
        if not self._checked:  # a sensible start: the current one and the next ones
            others = [n for n in names if n != s.current_name]
            self._checked = [s.current_name, *others[:2]]
        with QSignalBlocker(self.configList):
            self.configList.clear()
            for n in names:
                it = QListWidgetItem(n + ("  (current)" if n == s.current_name else ""))
                it.setData(Qt.ItemDataRole.UserRole, n)
                it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                it.setCheckState(
                    Qt.CheckState.Checked if n in self._checked else Qt.CheckState.Unchecked
                )
                self.configList.addItem(it)

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        name = item.data(Qt.ItemDataRole.UserRole)
        on = item.checkState() == Qt.CheckState.Checked
        if on and name not in self._checked:
            self._checked.append(name)
        elif not on and name in self._checked:
            self._checked.remove(name)
        self.refresh(histograms=True)
        self.comparedChanged.emit(self.compared())

    def refresh(self, histograms: bool = False) -> None:
        """Redraw the tables and the bar chart (and the histograms if asked)."""
        self._refreshing = True
        try:
            if self.configList.count() != len(self.session.configs):
                self._sync_list()
            self._start_sqnr()
            self._fill_metrics()
            self._fill_layers()
            self._fill_bars()
            self._fill_copy_combos()
        finally:
            self._refreshing = False
        self.updated.emit()
        if histograms:
            self.refresh_histograms()

    def _resolve(self, name: str, fqn: str) -> LayerConfig:
        return self.session.configs[name].resolve(fqn)

    # -- SQNR -------------------------------------------------------------------------------
    def _start_sqnr(self) -> None:
        s = self.session
        if s.handle is None:
            return
        ctl = self.controller
        todo = ctl.sqnr_todo([s.configs[n] for n in self.compared()])
        if not todo:
            return
        job = ctl.sqnr_job(todo)
        if ctl.todo_numel(todo) <= SQNR_INLINE_LIMIT:
            self.sqnrRunner.run_inline("compare SQNR", job.factory)
        elif not self.sqnrRunner.running:
            self.sqnrRunner.start("compare SQNR", job.factory)

    # -- metrics table -------------------------------------------------------------------
    def _fill_metrics(self) -> None:
        s = self.session
        names = self.compared()
        t = self.metricsTable
        t.setRowCount(len(names))
        self.evaluate_buttons = {}
        italic = QFont()
        italic.setItalic(True)
        for row, name in enumerate(names):
            cells = [""] * len(METRIC_COLUMNS)
            cells[M_NAME] = name
            cfg = s.configs[name]
            if s.handle is not None:
                try:
                    from quantviz.eval import size_of

                    size, fl = size_of(s.handle, cfg)
                    cells[M_SIZE] = human_bytes(size)
                    cells[M_COMP] = f"{fl / size:.2f}×"
                except ValueError as exc:
                    cells[M_SIZE] = f"invalid: {exc}"
            e = _latest(s.results_for(name))
            stale = e is not None and e.config != cfg
            if e is not None:
                r = e.result
                cells[M_METRIC] = f"{r.metric.replace('_', ' ')} {r.value:.4f}"
                cells[M_DROP] = f"{r.baseline - r.value:+.4f}"
                bops = getattr(r, "bops", None)
                cells[M_BOPS] = _fmt_ops(float(bops)) if bops else ""
                if stale:
                    cells[M_METRIC] += "  (edited since)"
            else:
                cells[M_METRIC] = "not evaluated"
            for col, text in enumerate(cells):
                it = QTableWidgetItem(text)
                if col == M_METRIC and (e is None or stale):
                    it.setFont(italic)
                    it.setToolTip(
                        "No evaluation of this configuration yet"
                        if e is None
                        else "The configuration changed after this evaluation"
                    )
                if col == M_NAME:
                    it.setForeground(QBrush(QColor(self._colour(name))))
                    f = QFont()
                    f.setBold(True)
                    it.setFont(f)
                t.setItem(row, col, it)
            if e is None or stale:
                b = QPushButton("Evaluate" if e is None else "Re-evaluate", t)
                b.setObjectName(f"evaluateButton_{name}")
                b.clicked.connect(lambda *_, n=name: self.evaluateRequested.emit(n))
                t.setCellWidget(row, M_EVAL, b)
                self.evaluate_buttons[name] = b
            else:
                t.removeCellWidget(row, M_EVAL)
        self.evaluateMissingButton.setEnabled(bool(self.evaluate_buttons))

    def _evaluate_missing(self) -> None:
        for name in list(self.evaluate_buttons):
            self.evaluateRequested.emit(name)

    # -- per-layer table --------------------------------------------------------------------
    def _column_of(self, name: str, what: str) -> int:
        names = self.compared()
        if name not in names:
            raise ValueError(f"config name: {name!r} is not compared")
        return 1 + 2 * names.index(name) + (0 if what == "scheme" else 1)

    def _row_of(self, fqn: str) -> int:
        fqns = self.session.fqns
        if fqn not in fqns:
            raise ValueError(f"layer: no quantizable layer named {fqn!r}")
        return fqns.index(fqn)

    def _fill_layers(self) -> None:
        s = self.session
        names = self.compared()
        fqns = s.fqns
        t = self.layerTable
        th = current_theme()
        diff_bg = QColor(th.accent)
        diff_bg.setAlpha(60)
        bold = QFont()
        bold.setBold(True)
        with QSignalBlocker(t):
            t.setColumnCount(1 + 2 * len(names))
            t.setRowCount(len(fqns))
            headers = ["Layer"]
            for n in names:
                headers += [n, "SQNR"]
            t.setHorizontalHeaderLabels(headers)
            self.diff_rows = set()
            for row, fqn in enumerate(fqns):
                cfgs = [self._resolve(n, fqn) for n in names]
                differs = len(set(cfgs)) > 1
                if differs:
                    self.diff_rows.add(fqn)
                name_item = QTableWidgetItem(("• " if differs else "") + fqn)
                name_item.setData(Qt.ItemDataRole.UserRole, fqn)
                if differs:
                    name_item.setFont(bold)
                    name_item.setToolTip("The configurations differ on this layer")
                t.setItem(row, 0, name_item)
                for i, (n, cfg) in enumerate(zip(names, cfgs, strict=True)):
                    sch = QTableWidgetItem(scheme_text(cfg))
                    sch.setToolTip(f"{n}: {cfg.short()}")
                    if differs:
                        sch.setBackground(QBrush(diff_bg))
                        sch.setFont(bold)
                    sq = self.controller.sqnr_under(fqn, cfg.weight)
                    sq_item = QTableWidgetItem(_fmt_sqnr(sq, cfg.weight is None))
                    sq_item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                    t.setItem(row, 1 + 2 * i, sch)
                    t.setItem(row, 2 + 2 * i, sq_item)
            if self._layer is None and fqns:
                sel = s.selection
                self._layer = sel[0] if sel else fqns[0]
            if self._layer is not None and self._layer in fqns:
                self._select_row(self._layer)

    def _select_row(self, fqn: str) -> None:
        t = self.layerTable
        row = self._row_of(fqn)
        if t.currentRow() != row:
            with QSignalBlocker(t):
                t.selectRow(row)

    def _on_row_selected(self) -> None:
        rows = {i.row() for i in self.layerTable.selectedIndexes()}
        if len(rows) != 1:
            return
        item = self.layerTable.item(rows.pop(), 0)
        fqn = None if item is None else item.data(Qt.ItemDataRole.UserRole)
        if fqn and fqn != self._layer:
            self._layer = fqn
            self._update_copy_button()
            self.refresh_histograms()

    def _context_menu(self, pos: QPoint) -> None:
        idx = self.layerTable.indexAt(pos)
        if not idx.isValid():
            return
        fqn = self.layerTable.item(idx.row(), 0).data(Qt.ItemDataRole.UserRole)
        menu = self.build_copy_menu(fqn)
        menu.popup(self.layerTable.viewport().mapToGlobal(pos))

    def build_copy_menu(self, fqn: str) -> QMenu:
        """The layer table's context menu for layer ``fqn`` (one action per copy)."""
        menu = QMenu(self)
        menu.setObjectName("compareCopyMenu")
        acts = self.copy_actions(fqn)
        if not acts:
            a = menu.addAction(f"{fqn} is the same in every compared configuration")
            a.setEnabled(False)
        for text, src, dst in acts:
            a = menu.addAction(text)
            a.triggered.connect(lambda *_, f=fqn, x=src, y=dst: self.request_copy(f, x, y))
        self.last_menu = menu
        return menu

    # -- copy row ------------------------------------------------------------------------------
    def _fill_copy_combos(self) -> None:
        names = self.compared()
        for combo, default in ((self.sourceCombo, 0), (self.targetCombo, 1)):
            keep = combo.currentText()
            with QSignalBlocker(combo):
                combo.clear()
                combo.addItems(names)
                if keep in names:
                    combo.setCurrentText(keep)
                elif len(names) > default:
                    combo.setCurrentIndex(default)
        if len(names) > 1 and self.sourceCombo.currentText() == self.targetCombo.currentText():
            with QSignalBlocker(self.targetCombo):
                self.targetCombo.setCurrentIndex((self.sourceCombo.currentIndex() + 1) % len(names))
        self._update_copy_button()

    def _update_copy_button(self, *_: Any) -> None:
        fqn, a, b = self._layer, self.sourceCombo.currentText(), self.targetCombo.currentText()
        ok = bool(fqn and a and b and a != b) and self._resolve(a, fqn) != self._resolve(b, fqn)
        self.copyButton.setText(f"Copy {fqn} from {a} to {b}" if fqn and a and b else "Copy")
        self.copyButton.setEnabled(ok)
        if fqn and a and b and not ok:
            self.copyButton.setToolTip(f"{fqn} is already the same in {a} and {b}")
        else:
            self.copyButton.setToolTip("Undoable (Ctrl+Z)")

    def _copy_clicked(self) -> None:
        if self._layer:
            self.request_copy(
                self._layer, self.sourceCombo.currentText(), self.targetCombo.currentText()
            )

    # -- bar chart --------------------------------------------------------------------------
    def _colour(self, name: str) -> str:
        th = current_theme()
        names = self.compared()
        i = names.index(name) if name in names else 0
        return th.series[i % len(th.series)]

    def _fill_bars(self) -> None:
        s = self.session
        names = self.compared()
        fqns = s.fqns
        series = {}
        for n in names:
            specs = [self._resolve(n, f).weight for f in fqns]
            series[n] = (
                [self.controller.sqnr_under(f, w) for f, w in zip(fqns, specs, strict=True)],
                [w is None for w in specs],
                self._colour(n),
            )
        self.bars.set_data(fqns, series)

    def bar_heights(self, name: str) -> list[float]:
        """The bar heights (SQNR dB; 0 for float / invalid) of configuration ``name``."""
        return self.bars.heights(name)

    # -- histograms -----------------------------------------------------------------------
    def _rebuild_panels(self, names: list[str]) -> None:
        if [p.name for p in self.panels] == names:
            for p in self.panels:  # colours follow the position
                p.colour = self._colour(p.name)
            return
        for p in self.panels:
            self.histRow.removeWidget(p.plot)
            p.plot.deleteLater()
        self.panels = [HistPanel(n, self._colour(n)) for n in names]
        first = None
        for p in self.panels:
            self.histRow.addWidget(p.plot, 1)
            if first is None:
                first = p.plot
            else:
                p.plot.setXLink(first)
                p.plot.setYLink(first)

    def refresh_histograms(self) -> None:
        """Recompute the selected layer's histogram under every compared configuration."""
        s = self.session
        names = self.compared()
        self._rebuild_panels(names)
        fqn = self._layer
        if s.handle is None or fqn is None or fqn not in s.fqns or not names:
            self.histTitle.setText("Select a layer")
            return
        specs = [(n, self._resolve(n, fqn).weight) for n in names]
        ctl = self.controller

        def job() -> Any:
            with torch_threads(1):
                return fqn, [(n, ctl.layer_view(fqn, None, -1, sp)) for n, sp in specs]
            yield  # a generator: the runner can drop it when stale

        self.histTitle.setText(f"<b>{fqn}</b> — weights and grid under each configuration…")
        if ctl.weight_numel(fqn) * len(specs) > INLINE_LIMIT:
            self.histRunner.start(f"compare histograms {fqn}", job)
        else:
            self.histRunner.run_inline(f"compare histograms {fqn}", job)

    def _show_hists(self, payload: Any) -> None:
        fqn, items = payload
        if fqn != self._layer:
            return
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
        self.histTitle.setText(
            f"<b>{fqn}</b> — {n:,} weights and the grid under each configuration "
            "(x and y axes linked)"
        )
        self.histogramsUpdated.emit()

    def apply_theme(self) -> None:
        """Re-colour for the current plot theme (light/dark switch)."""
        self.bars.apply_theme()
        for p in self.panels:
            self.histRow.removeWidget(p.plot)
            p.plot.deleteLater()
        self.panels = []
        self.refresh(histograms=True)

    def shutdown(self, timeout: float = 10.0) -> bool:
        ok = self.sqnrRunner.shutdown(timeout)
        return self.histRunner.shutdown(timeout) and ok


def _heading(text: str) -> QLabel:
    lab = QLabel(text)
    lab.setTextFormat(Qt.TextFormat.RichText)
    f = lab.font()
    f.setBold(True)
    lab.setFont(f)
    return lab
