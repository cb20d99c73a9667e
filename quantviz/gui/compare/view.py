"""``compareView``: named configurations side by side.

Pick two or more configurations in the checkable list and see, next to each other: their
metrics (from the session's results; size and compression are known without evaluating;
stale rows in italics), a per-layer table of each configuration's weight scheme and SQNR
(cells that differ across the configurations are tinted and bold), the selected layer's
weight histogram and grid under each configuration (linked x/y axes) and a bar chart of
every layer's weight SQNR, one bar series per configuration.

The view owns no state but the compared names (kept by
:class:`quantviz.app.compare.CompareModel`) and reads every number from the model's
:class:`~quantviz.app.compare.CompareState`; it asks for changes through signals —
``copyRequested(fqn, source, target)`` (the main window pushes an undoable command) and
``evaluateRequested(name)``.
"""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QPoint, QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QSplitter,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from quantviz.app import AppController
from quantviz.app.compare import CompareModel, CompareState, compare_state
from quantviz.gui.compare.commands import CopyBar
from quantviz.gui.compare.plots import ErrorBars, HistPanel, HistRow, column, heading
from quantviz.gui.compare.tables import (
    fill_config_list,
    fill_layers,
    fill_metrics,
    layer_column,
    layer_row,
    layer_table,
    metrics_table,
)
from quantviz.gui.histogram_view import INLINE_LIMIT
from quantviz.gui.plot_style import current_theme
from quantviz.gui.workers import Runner, torch_threads

__all__ = ["CompareView"]


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
        self.model = CompareModel(controller)
        self.state: CompareState = compare_state(controller, [])
        self._layer: str | None = None
        self._refreshing = False
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
            "Evaluate every compared configuration without a current result (one after another)"
        )
        self.evaluateMissingButton.clicked.connect(self._evaluate_missing)
        pick = column(
            heading("Configurations (tick 2 or more)"),
            self.configList,
            self.evaluateMissingButton,
            stretch=1,
        )

        # -- metrics --------------------------------------------------------------------------
        self.metricsTable = metrics_table(self)
        metrics = column(
            heading("Metrics (latest evaluation of each configuration)"), self.metricsTable
        )
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(pick)
        top.addWidget(metrics)
        top.setSizes([260, 1000])

        # -- per-layer table + copy ----------------------------------------------------------
        self.layerTable = layer_table(self)
        self.layerTable.customContextMenuRequested.connect(self._context_menu)
        self.layerTable.itemSelectionChanged.connect(self._on_row_selected)
        self.copyBar = CopyBar(self)
        self.sourceCombo = self.copyBar.sourceCombo
        self.targetCombo = self.copyBar.targetCombo
        self.copyButton = self.copyBar.copyButton
        self.copyBar.requested.connect(self._copy_clicked)
        self.copyBar.changed.connect(self._update_copy_button)
        layers = column(
            heading("Per layer: scheme and weight SQNR (dB)"),
            self.layerTable,
            self.copyBar,
            stretch=1,
        )

        # -- histograms of the selected layer ----------------------------------------------
        self.hists = HistRow(self)
        self.histTitle = self.hists.title
        middle = QSplitter(Qt.Orientation.Horizontal)
        middle.addWidget(layers)
        middle.addWidget(self.hists)
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
        return self.model.compared()

    def set_compared(self, names: list[str]) -> None:
        """Compare ``names`` (unknown names are an error naming them)."""
        self.model.set_compared(names)
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
        return [(a.text, a.source, a.target) for a in self.model.copy_actions(fqn)]

    def request_copy(self, fqn: str, source: str, target: str) -> None:
        """Ask for layer ``fqn``'s setting in ``source`` to be copied to ``target``."""
        self.copyRequested.emit(fqn, source, target)

    @property
    def panels(self) -> list[HistPanel]:
        """The histogram panels, one per compared configuration."""
        return self.hists.panels

    def histogram_plots(self) -> list[pg.PlotWidget]:
        return [p.plot for p in self.panels]

    def cell_text(self, fqn: str, name: str, what: str = "scheme") -> str:
        """The per-layer table's text for layer ``fqn`` and config ``name`` (scheme/sqnr)."""
        item = self.cell_item(fqn, name, what)
        return "" if item is None else item.text()

    def cell_item(self, fqn: str, name: str, what: str = "scheme") -> QTableWidgetItem | None:
        return self.layerTable.item(
            layer_row(self.session.fqns, fqn), layer_column(self.state.names, name, what)
        )

    def bar_heights(self, name: str) -> list[float]:
        """The bar heights (SQNR dB; 0 for float / invalid) of configuration ``name``."""
        return self.bars.heights(name)

    # -- session -> view -----------------------------------------------------------------------
    def _on_model(self, *_: Any) -> None:
        self.sqnrRunner.cancel()
        self.histRunner.cancel()
        self._layer = None
        self.model.reset()
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
        self.model.sync()
        fill_config_list(self.configList, self.session, self.model.is_checked)

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        name = item.data(Qt.ItemDataRole.UserRole)
        self.model.set_checked(name, item.checkState() == Qt.CheckState.Checked)
        self.refresh(histograms=True)
        self.comparedChanged.emit(self.compared())

    def refresh(self, histograms: bool = False) -> None:
        """Redraw the tables and the bar chart (and the histograms if asked)."""
        self._refreshing = True
        try:
            if self.configList.count() != len(self.session.configs):
                self._sync_list()
            self._start_sqnr()
            self.state = st = self.model.state()
            self.diff_rows = set(st.diff_rows)
            self.evaluate_buttons = fill_metrics(
                self.metricsTable, st, self._colour, self.evaluateRequested.emit
            )
            self.evaluateMissingButton.setEnabled(bool(self.evaluate_buttons))
            fill_layers(self.layerTable, st)
            fqns = self.session.fqns
            if self._layer is None and fqns:
                sel = self.session.selection
                self._layer = sel[0] if sel else fqns[0]
            if self._layer is not None and self._layer in fqns:
                self._select_row(self._layer)
            self.bars.set_data(st.bars, {n: self._colour(n) for n in st.names})
            self.copyBar.set_names(self.compared())
            self._update_copy_button()
        finally:
            self._refreshing = False
        self.updated.emit()
        if histograms:
            self.refresh_histograms()

    def _start_sqnr(self) -> None:
        ctl = self.controller
        todo = self.model.sqnr_todo()
        if not todo:
            return
        job = ctl.sqnr_job(todo)
        if ctl.sqnr_inline(todo):
            self.sqnrRunner.run_inline("compare SQNR", job.factory)
        elif not self.sqnrRunner.running:
            self.sqnrRunner.start("compare SQNR", job.factory)

    def _evaluate_missing(self) -> None:
        for name in list(self.evaluate_buttons):
            self.evaluateRequested.emit(name)

    # -- per-layer table: selection and copies ------------------------------------------------
    def _select_row(self, fqn: str) -> None:
        t = self.layerTable
        row = layer_row(self.session.fqns, fqn)
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
        item = self.layerTable.item(idx.row(), 0) if idx.isValid() else None
        if item is None:
            return
        menu = self.build_copy_menu(item.data(Qt.ItemDataRole.UserRole))
        menu.popup(self.layerTable.viewport().mapToGlobal(pos))

    def build_copy_menu(self, fqn: str) -> QMenu:
        """The layer table's context menu for layer ``fqn`` (one action per copy)."""
        menu = QMenu(self)
        menu.setObjectName("compareCopyMenu")
        acts = self.model.copy_actions(fqn)
        if not acts:
            a = menu.addAction(f"{fqn} is the same in every compared configuration")
            a.setEnabled(False)
        for c in acts:
            a = menu.addAction(c.text)
            a.triggered.connect(lambda *_, c=c: self.request_copy(c.fqn, c.source, c.target))
        self.last_menu = menu
        return menu

    def _update_copy_button(self, *_: Any) -> None:
        fqn, bar = self._layer, self.copyBar
        bar.set_layer(fqn, self.model.can_copy(fqn, bar.source(), bar.target()))

    def _copy_clicked(self, source: str, target: str) -> None:
        if self._layer:
            self.request_copy(self._layer, source, target)

    # -- histograms -----------------------------------------------------------------------
    def _colour(self, name: str) -> str:
        th = current_theme()
        names = self.compared()
        i = names.index(name) if name in names else 0
        return th.series[i % len(th.series)]

    def refresh_histograms(self) -> None:
        """Recompute the selected layer's histogram under every compared configuration."""
        s = self.session
        names = self.compared()
        self.hists.set_names(names, {n: self._colour(n) for n in names})
        fqn = self._layer
        if s.handle is None or fqn is None or fqn not in s.fqns or not names:
            self.histTitle.setText("Select a layer")
            return
        specs = self.model.layer_specs(fqn)
        ctl = self.controller

        def job() -> Any:
            with torch_threads(1):
                return fqn, [(n, ctl.layer_view(fqn, None, -1, sp, n)) for n, sp in specs]
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
        self.hists.show_layer(fqn, items)
        self.histogramsUpdated.emit()

    def apply_theme(self) -> None:
        """Re-colour for the current plot theme (light/dark switch)."""
        self.bars.apply_theme()
        self.hists.clear()
        self.refresh(histograms=True)

    def shutdown(self, timeout: float = 10.0) -> bool:
        ok = self.sqnrRunner.shutdown(timeout)
        return self.histRunner.shutdown(timeout) and ok
