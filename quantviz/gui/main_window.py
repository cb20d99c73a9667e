"""The main window: wiring between the session, the views and the background jobs.

Layout: layer table + configurations (left), weight histogram + trade-off plot (centre),
controls + activation histogram (right); toolbar, menus and a status bar with the model's
numbers and a progress bar + Cancel for background jobs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSettings, QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolBar,
    QWidget,
)

from quantviz.core.spec import ModelConfig, QuantSpec
from quantviz.gui.activation_view import ActivationView
from quantviz.gui.commands import SetConfigCommand
from quantviz.gui.compare_view import CompareView, CopyLayerCommand
from quantviz.gui.config_list import ConfigList
from quantviz.gui.errors import ErrorReporter, guarded
from quantviz.gui.histogram_view import HistogramView
from quantviz.gui.jobs import SENSITIVITY_BITS, JobController
from quantviz.gui.layer_controls import LayerControls
from quantviz.gui.layer_table import LayerTableWidget, human_bytes, human_count
from quantviz.gui.session_actions import SessionActions
from quantviz.gui.tradeoff_plot import TradeoffPlot
from quantviz.gui.workers import Runner
from quantviz.session import ResultEntry, Session, apply_to_all, reset_layers, set_layer_spec

__all__ = ["MainWindow"]

#: SQNR of all layers is computed inline when the layers to do hold fewer elements than this
SQNR_INLINE_LIMIT = 2_000_000


class MainWindow(QMainWindow):
    """The quantviz main window. Signals for tests and scripts: ``modelLoaded(handle)``,
    ``modelLoadFailed(message)``, ``statsReady()``, ``jobDone(kind)``, ``jobFailed(kind)``.
    """

    modelLoaded = Signal(object)
    modelLoadFailed = Signal(str)
    statsReady = Signal()
    jobDone = Signal(str)
    jobFailed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowTitle("quantviz")
        self.resize(1680, 1000)
        self.session = Session()
        self.errors = ErrorReporter(self)
        self.undoStack = QUndoStack(self)
        self.undoStack.setObjectName("undoStack")
        self.confirm_trust: Callable[[str], bool] = self._ask_trust
        self._pending_source: str | None = None
        self._pending_open: dict[str, Any] = {}
        self._eval_queue: list[str] = []
        self.exportDialog: Any = None

        # -- views ------------------------------------------------------------------------
        s = self.session
        self.table = LayerTableWidget(s, self)
        self.configs = ConfigList(s, self)
        self.histogram = HistogramView(s, self)
        self.activations = ActivationView(s, self)
        self.controls = LayerControls(s, self)
        self.tradeoff = TradeoffPlot(s, self)
        self.configs.errorRaised.connect(self.errors.report)
        self.histogram.failed.connect(lambda m: self.errors.report("Histogram", m))

        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.table)
        left.addWidget(self.configs)
        left.setSizes([620, 200])
        centre = QSplitter(Qt.Orientation.Vertical)
        centre.addWidget(self.histogram)
        centre.addWidget(self.tradeoff)
        centre.setSizes([480, 360])
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.controls)
        right.addWidget(self.activations)
        right.addWidget(self.histogram.rangePlot)
        right.setSizes([330, 270, 220])
        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(centre)
        main.addWidget(right)
        main.setSizes([660, 640, 380])
        self.setCentralWidget(main)

        # -- compare (a dock, floating by default; see compare_view.py) ------------------------
        self.compareView = CompareView(s, self)
        self.compareDock = QDockWidget("Compare configurations", self)
        self.compareDock.setObjectName("compareDock")
        self.compareDock.setWidget(self.compareView)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.compareDock)
        self.compareDock.setFloating(True)
        self.compareDock.hide()
        self.compareDock.visibilityChanged.connect(lambda *_: self._mark_compared())
        self.compareView.comparedChanged.connect(lambda *_: self._mark_compared())
        self.compareView.copyRequested.connect(self.copy_layer)
        self.compareView.evaluateRequested.connect(self.evaluate_named)

        # -- runners ---------------------------------------------------------------------
        self.loadRunner = Runner("loadRunner", self)
        self.statsRunner = Runner("statsRunner", self)
        self.sqnrRunner = Runner("sqnrRunner", self)
        self.jobs = JobController(s, self.errors, self)
        self.jobRunner = self.jobs.runner
        self.jobs.jobDone.connect(self.jobDone)
        self.jobs.jobFailed.connect(self.jobFailed)
        self.jobs.jobDone.connect(self._next_queued_eval)
        self.jobs.jobFailed.connect(self._next_queued_eval)
        self.jobs.runner.cancelled.connect(self._eval_queue.clear)
        self.jobs.statusMessage.connect(self.statusBar().showMessage)
        self.jobs.wait_before = self.statsRunner.wait
        self.loadRunner.finished.connect(self._on_loaded)
        self.loadRunner.failed.connect(self._on_load_failed)
        self.statsRunner.finished.connect(self._on_stats)
        self.statsRunner.failed.connect(lambda e: self.errors.report("Calibration statistics", e))
        self.sqnrRunner.yielded.connect(self._on_sqnr)
        self.sqnrRunner.failed.connect(lambda e: self.errors.report("Layer SQNR", e))
        self.jobRunner.progress.connect(self._on_progress)
        self.jobRunner.started.connect(self._on_job_started)
        self.jobRunner.idle.connect(self._on_job_idle)
        self.loadRunner.started.connect(lambda label: self.statusBar().showMessage(label))

        self.sessionActions = SessionActions(self)
        self._build_actions()
        self._build_status_bar()

        # -- session <-> UI -------------------------------------------------------------------
        self.controls.specEdited.connect(self._on_spec_edited)
        self.controls.applyAllRequested.connect(self._on_apply_all)
        self.controls.resetRequested.connect(self._on_reset)
        self.tradeoff.entryClicked.connect(self._on_entry_clicked)
        s.model_changed.connect(self._on_model_changed)
        s.config_changed.connect(self._on_config_changed)
        s.current_name_changed.connect(lambda *_: self._update_status())
        self._update_status()

    # -- actions ----------------------------------------------------------------------------
    def _action(
        self, name: str, text: str, slot: Callable[[], Any], shortcut: Any = None, tip: str = ""
    ) -> QAction:
        a = QAction(text, self)
        a.setObjectName(name)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        if tip:
            a.setToolTip(tip)
            a.setStatusTip(tip)
        a.triggered.connect(lambda *_: slot())
        self.addAction(a)
        return a

    def _build_actions(self) -> None:
        self.openModelAction = self._action(
            "openModelAction",
            "Open model…",
            self._ask_open_model,
            QKeySequence.StandardKey.Open,
            "Open a model file (TorchScript, .pt2, safetensors/state_dict + architecture)",
        )
        self.openDataAction = self._action(
            "openDataAction",
            "Open data…",
            self._ask_open_data,
            None,
            "Evaluation data: a .npz / .pt file with x and optional y",
        )
        self.loadConfigAction = self._action(
            "loadConfigAction", "Load configuration…", self._ask_load_config
        )
        self.saveConfigAction = self._action(
            "saveConfigAction",
            "Save configuration…",
            self._ask_save_config,
            QKeySequence.StandardKey.Save,
        )
        sa = self.sessionActions
        self.importConfigAction = self._action(
            "importConfigAction",
            "Import configuration…",
            sa.ask_import_config,
            None,
            "Check a config file against the model and make it the current configuration",
        )
        self.exportAction = self._action(
            "exportAction",
            "Export…",
            self.show_export_dialog,
            QKeySequence("Ctrl+E"),
            "Write a configuration as JSON, YAML, safetensors, ONNX, AIMET or an HTML report",
        )
        self.saveSessionAction = self._action(
            "saveSessionAction",
            "Save session…",
            sa.ask_save_session,
            QKeySequence("Ctrl+Shift+S"),
            "Model, data, named configurations and results in one .quantviz file",
        )
        self.openSessionAction = self._action(
            "openSessionAction",
            "Open session…",
            sa.ask_open_session,
            QKeySequence("Ctrl+Shift+O"),
            "Reopen a .quantviz session file",
        )
        self.compareAction = self._action(
            "compareAction",
            "Compare…",
            self.show_compare,
            QKeySequence("Ctrl+K"),
            "Compare named configurations side by side",
        )
        self.quitAction = self._action(
            "quitAction", "Quit", self.close, QKeySequence.StandardKey.Quit
        )
        self.evaluateAction = self._action(
            "evaluateAction",
            "Evaluate",
            self.evaluate,
            Qt.Key.Key_F5,
            "Evaluate the current configuration (F5)",
        )
        self.sweepAction = self._action(
            "sweepAction",
            "Uniform sweep",
            self.uniform_sweep,
            None,
            "The default weight scheme at 2, 3, 4, 5, 6 and 8 bits for every layer",
        )
        self.sensitivityAction = self._action(
            "sensitivityAction",
            "Sensitivity",
            self.run_sensitivity,
            None,
            f"Each layer alone at {SENSITIVITY_BITS} bits, the rest float: the metric drop",
        )
        self.mixedAction = self._action(
            "mixedPrecisionAction",
            "Mixed precision",
            self.mixed_precision,
            None,
            "Greedy per-layer bit allocation under the memory budget",
        )
        self.cancelAction = self._action(
            "cancelAction",
            "Cancel",
            self.cancel_job,
            Qt.Key.Key_Escape,
            "Stop the running job at its next step",
        )
        self.cancelAction.setEnabled(False)
        self.undoAction = self._action(
            "undoAction", "Undo", self.undoStack.undo, QKeySequence.StandardKey.Undo
        )
        self.redoAction = self._action("redoAction", "Redo", self.undoStack.redo)
        self.redoAction.setShortcuts(
            [QKeySequence("Ctrl+Shift+Z"), QKeySequence(QKeySequence.StandardKey.Redo)]
        )
        self.undoAction.setEnabled(False)
        self.redoAction.setEnabled(False)
        self.undoStack.canUndoChanged.connect(self.undoAction.setEnabled)
        self.undoStack.canRedoChanged.connect(self.redoAction.setEnabled)
        self.undoStack.undoTextChanged.connect(
            lambda t: self.undoAction.setToolTip(f"Undo {t} (Ctrl+Z)")
        )
        self.undoStack.redoTextChanged.connect(
            lambda t: self.redoAction.setToolTip(f"Redo {t} (Ctrl+Shift+Z)")
        )

        self.budgetSpin = QDoubleSpinBox(self)
        self.budgetSpin.setObjectName("budgetSpin")
        self.budgetSpin.setDecimals(3)
        self.budgetSpin.setRange(0.0, 1e6)
        self.budgetSpin.setSingleStep(0.005)
        self.budgetSpin.setSuffix(" MB")
        self.budgetSpin.setSpecialValueText("auto budgets")
        self.budgetSpin.setToolTip("Memory budget for Mixed precision (0 = a sweep of 6 budgets)")

        mb = self.menuBar()
        f = mb.addMenu("&File")
        for a in (self.openModelAction, self.openDataAction):
            f.addAction(a)
        f.addSeparator()
        f.addAction(self.openSessionAction)
        f.addMenu(self.sessionActions.recentMenu)
        f.addAction(self.saveSessionAction)
        f.addSeparator()
        f.addAction(self.loadConfigAction)
        f.addAction(self.importConfigAction)
        f.addAction(self.saveConfigAction)
        f.addAction(self.exportAction)
        f.addSeparator()
        f.addAction(self.quitAction)
        e = mb.addMenu("&Edit")
        e.addAction(self.undoAction)
        e.addAction(self.redoAction)
        v = mb.addMenu("&View")
        self.darkAction = QAction("Dark palette", self)
        self.darkAction.setObjectName("darkAction")
        self.darkAction.setCheckable(True)
        self.darkAction.setShortcut(QKeySequence("Ctrl+Shift+D"))
        self.darkAction.toggled.connect(self.set_dark)
        self.addAction(self.darkAction)
        v.addAction(self.darkAction)
        v.addAction(self.compareAction)
        r = mb.addMenu("&Run")
        for a in (self.evaluateAction, self.sweepAction, self.sensitivityAction, self.mixedAction):
            r.addAction(a)
        r.addSeparator()
        r.addAction(self.cancelAction)

        tb = QToolBar("Main", self)
        tb.setObjectName("mainToolBar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for a in (self.openModelAction, self.openDataAction):
            tb.addAction(a)
        tb.addSeparator()
        tb.addAction(self.undoAction)
        tb.addAction(self.redoAction)
        tb.addSeparator()
        for a in (self.evaluateAction, self.sweepAction, self.sensitivityAction, self.mixedAction):
            tb.addAction(a)
        tb.addWidget(QLabel(" budget ", self))
        tb.addWidget(self.budgetSpin)
        tb.addSeparator()
        tb.addAction(self.cancelAction)
        tb.addSeparator()
        tb.addAction(self.compareAction)
        tb.addAction(self.exportAction)
        self.addToolBar(tb)

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.modelLabel = QLabel("no model", self)
        self.modelLabel.setObjectName("modelLabel")
        self.paramsLabel = QLabel("", self)
        self.paramsLabel.setObjectName("paramsLabel")
        self.floatSizeLabel = QLabel("", self)
        self.floatSizeLabel.setObjectName("floatSizeLabel")
        self.currentSizeLabel = QLabel("", self)
        self.currentSizeLabel.setObjectName("currentSizeLabel")
        self.progressBar = QProgressBar(self)
        self.progressBar.setObjectName("progressBar")
        self.progressBar.setRange(0, 1000)
        self.progressBar.setFixedWidth(260)
        self.progressBar.setTextVisible(True)
        self.progressBar.setFormat("idle")
        self.progressBar.setValue(0)
        self.progressBar.setEnabled(False)
        self.cancelButton = QPushButton("Cancel", self)
        self.cancelButton.setObjectName("cancelButton")
        self.cancelButton.clicked.connect(self.cancel_job)
        self.cancelButton.setEnabled(False)
        # always shown (enabled while a job runs): showing/hiding would re-lay out and
        # repaint the whole window on every job start and end
        for w in (self.modelLabel, self.paramsLabel, self.floatSizeLabel, self.currentSizeLabel):
            sb.addPermanentWidget(w)
        sb.addPermanentWidget(self.progressBar)
        sb.addPermanentWidget(self.cancelButton)

    def set_dark(self, dark: bool) -> None:
        """Switch the application and plot palettes (light / dark) in place."""
        from PySide6.QtWidgets import QApplication

        from quantviz.gui.theme import apply_theme

        app = QApplication.instance()
        apply_theme(app, dark)  # type: ignore[arg-type]
        for view in (self.histogram, self.activations, self.tradeoff, self.compareView):
            view.apply_theme()
        if self.darkAction.isChecked() != dark:
            with QSignalBlocker(self.darkAction):
                self.darkAction.setChecked(dark)

    # -- model loading -----------------------------------------------------------------------
    def open_model(
        self,
        source: str,
        data: str | None = None,
        *,
        trust: bool = False,
        check: Callable[[Any], None] | None = None,
        after: Callable[[Any], None] | None = None,
    ) -> None:
        """Load ``source`` (and ``data``) in the background; the current model stays open
        until the new one is ready, and stays if loading fails.

        ``check(handle)`` runs in the loading thread (raise ``ValueError`` to refuse the
        model: nothing changes); ``after(handle)`` runs once the model is the session's.
        """
        self._pending_source = source
        self._pending_open = {"data": data, "check": check, "after": after}

        def job() -> Any:
            from quantviz.data import load_data
            from quantviz.model import load_model

            yield 0.0
            handle = load_model(source, trust=trust)
            if check is not None:
                check(handle)
            yield 0.5
            ds = data if data is not None else handle.default_data
            loaded = None if ds is None else load_data(ds, handle)
            return handle, ds, loaded, after

        self.loadRunner.start(f"Opening {source}…", job)

    def _ask_trust(self, message: str) -> bool:
        return (
            QMessageBox.question(
                self,
                "Unpickle a whole model?",
                f"{message}\n\nUnpickling runs code from the file. Only do this for files you "
                "trust. Load it anyway?",
            )
            == QMessageBox.StandardButton.Yes
        )

    def _on_load_failed(self, exc: BaseException) -> None:
        src = self._pending_source or "model"
        msg = str(exc)
        if "trust" in msg.lower() and self._pending_source and self.confirm_trust(msg):
            self.open_model(self._pending_source, trust=True, **self._pending_open)
            return
        self.statusBar().showMessage(f"Could not open {src}", 5000)
        self.errors.report(f"Could not open {src}", exc)
        self.modelLoadFailed.emit(msg)

    def _on_loaded(self, payload: Any) -> None:
        handle, ds, data, after = payload
        for r in (self.statsRunner, self.sqnrRunner):
            r.cancel()
        self.jobs.reset()
        self.undoStack.clear()
        self.session.set_model(handle, ds, data)
        if handle.layers:
            self.session.select([handle.layers[0].fqn])
        self.statusBar().showMessage(f"Opened {handle.name}", 4000)
        self.budgetSpin.setValue(round(handle.float_bytes / 4e6, 3))
        if after is not None:
            after(handle)
        self.modelLoaded.emit(handle)
        self._start_stats()

    def _start_stats(self) -> None:
        s = self.session
        if s.handle is None or s.data is None:
            return
        handle, data = s.handle, s.data
        wait_jobs = self.jobRunner.wait

        def job() -> Any:
            from quantviz.eval import calibrate

            wait_jobs()  # an evaluation in flight has the model's weights swapped out
            stats: dict[str, Any] = {}
            yield from calibrate(handle, data, handle.fqns, stats)
            return stats

        self.statsRunner.start("calibration statistics", job)

    def _on_stats(self, stats: Any) -> None:
        self.session.set_activation_stats(stats)
        self.statsReady.emit()

    def _on_model_changed(self, handle: Any) -> None:
        self.setWindowTitle(f"quantviz — {handle.name}" if handle is not None else "quantviz")
        self._update_status()

    # -- status ------------------------------------------------------------------------------
    def _update_status(self) -> None:
        h = self.session.handle
        if h is None:
            self.modelLabel.setText("no model")
            for w in (self.paramsLabel, self.floatSizeLabel, self.currentSizeLabel):
                w.setText("")
            return
        self.modelLabel.setText(f"<b>{h.name}</b>")
        self.paramsLabel.setText(f"{human_count(h.total_params)} params")
        self.floatSizeLabel.setText(f"float {human_bytes(h.float_bytes)}")
        try:
            from quantviz.eval import size_of

            size, fl = size_of(h, self.session.config)
            self.currentSizeLabel.setText(
                f"<b>{self.session.current_name}</b>: {human_bytes(size)} "
                f"({fl / size:.2f}× smaller)"
            )
        except ValueError as exc:
            self.currentSizeLabel.setText(f"size: {exc}")

    def current_size_bytes(self) -> float:
        from quantviz.eval import size_of

        return size_of(self.session.handle, self.session.config)[0]

    # -- edits (undoable) ------------------------------------------------------------------
    def push_config(self, after: ModelConfig, text: str) -> None:
        """Make ``after`` the current configuration's content, as one undoable step."""
        before = self.session.config
        if after == before:
            return
        self.undoStack.push(
            SetConfigCommand(self.session, self.session.current_name, before, after, text)
        )

    @guarded("Could not change the layer")
    def _on_spec_edited(self, side: str, spec: QuantSpec | None) -> None:
        sel = self.session.selection
        if not sel:
            return
        what = "float" if spec is None else spec.short()
        who = sel[0] if len(sel) == 1 else f"{len(sel)} layers"
        self.push_config(
            set_layer_spec(self.session.config, sel, side, spec), f"{who}: {side} {what}"
        )

    @guarded("Could not apply to all layers")
    def _on_apply_all(self, side: str, spec: QuantSpec | None) -> None:
        what = "float" if spec is None else spec.short()
        self.push_config(
            apply_to_all(self.session.config, side, spec), f"all layers: {side} {what}"
        )

    @guarded("Could not reset")
    def _on_reset(self) -> None:
        sel = self.session.selection
        self.push_config(reset_layers(self.session.config, sel), f"reset {len(sel)} layer(s)")

    def _on_config_changed(self, *_: Any) -> None:
        self._update_status()
        self._start_sqnr()

    def _start_sqnr(self) -> None:
        s = self.session
        if s.handle is None:
            return
        todo = s.missing_sqnr()
        sel = set(s.selection[:1])
        todo = [t for t in todo if t[0] not in sel]  # the histogram view does that one
        if not todo:
            return
        n = sum(s.handle.layer(f).weight_numel for f, _ in todo)
        if n <= SQNR_INLINE_LIMIT:
            self.sqnrRunner.run_inline("layer SQNR", lambda: s.iter_sqnr(todo))
        else:
            self.sqnrRunner.start("layer SQNR", lambda: s.iter_sqnr(todo))

    def _on_sqnr(self, item: Any) -> None:
        fqn, spec, sq = item
        self.session.set_layer_sqnr(fqn, spec, sq)

    @guarded("Could not switch configuration")
    def _on_entry_clicked(self, entry: ResultEntry) -> None:
        name = self.session.adopt(entry)
        self.statusBar().showMessage(f"{name} is now the current configuration", 4000)

    # -- compare and export -------------------------------------------------------------------
    def show_compare(self) -> None:
        """Open the compare view (a floating dock the first time)."""
        d = self.compareDock
        if d.isFloating() and not d.isVisible():
            g = self.geometry()
            d.resize(min(1500, max(g.width() - 80, 900)), min(940, max(g.height() - 60, 700)))
            d.move(g.x() + 40, g.y() + 30)
        d.show()
        d.raise_()

    def _mark_compared(self) -> None:
        shown = self.compareDock.isVisible()
        self.tradeoff.set_compared(self.compareView.compared() if shown else [])

    @guarded("Could not copy the layer setting")
    def copy_layer(self, fqn: str, source: str, target: str) -> None:
        """Copy layer ``fqn``'s setting from configuration ``source`` to ``target`` (undoable)."""
        cmd = CopyLayerCommand(self.session, fqn, source, target)
        if cmd.after == cmd.before:
            self.statusBar().showMessage(f"{fqn} is already the same in {target}", 4000)
            return
        self.undoStack.push(cmd)
        self.statusBar().showMessage(cmd.text(), 4000)

    def evaluate_named(self, name: str) -> None:
        """Evaluate configuration ``name`` (queued behind a running job); the current
        configuration stays current."""
        if self.jobRunner.running:
            if name not in self._eval_queue:
                self._eval_queue.append(name)
            self.statusBar().showMessage(f"{name}: queued for evaluation", 4000)
            return
        self._evaluate_now(name)

    @guarded("Could not start the evaluation")
    def _evaluate_now(self, name: str) -> None:
        s = self.session
        if name not in s.configs:
            raise ValueError(f"config name: no configuration named {name!r}")
        prev = s.current_name
        if name == prev:
            self.jobs.evaluate()
            return
        s.make_current(name)  # the job takes the current configuration and its name...
        try:
            self.jobs.evaluate()
        finally:
            s.make_current(prev)  # ...and the user's stays current

    def _next_queued_eval(self, *_: Any) -> None:
        while self._eval_queue and not self.jobRunner.running:
            name = self._eval_queue.pop(0)
            if name in self.session.configs:
                self._evaluate_now(name)

    def show_export_dialog(self) -> None:
        """Open File > Export… (one dialog, kept between uses)."""
        from quantviz.gui.export_dialog import ExportDialog

        if self.exportDialog is None:
            self.exportDialog = ExportDialog(
                self.session,
                self.errors,
                self,
                images=self.report_images,
                wait_before=self._wait_for_jobs,
            )
        else:
            self.exportDialog.sync()
        self.exportDialog.show()
        self.exportDialog.raise_()

    def _wait_for_jobs(self) -> None:
        self.statsRunner.wait()
        self.jobRunner.wait()

    def report_images(self) -> dict[str, bytes]:
        """PNGs of the trade-off plot and the current histogram for the HTML report."""
        from quantviz.gui.export_dialog import png_bytes

        out = {"Accuracy vs memory": png_bytes(self.tradeoff.plot)}
        if self.histogram.data is not None:
            out[f"Weights of {self.histogram.data.fqn}"] = png_bytes(self.histogram)
        return out

    # -- jobs (see jobs.py) --------------------------------------------------------------
    def evaluate(self) -> None:
        """Evaluate the current configuration in the background (F5)."""
        self.jobs.evaluate()

    def uniform_sweep(self) -> None:
        """Every layer at the default weight scheme with 2..8 bits; the curve grows per point."""
        self.jobs.uniform_sweep()

    def run_sensitivity(self) -> None:
        """Each layer alone at a low bit-width: fills the table's sensitivity column."""
        self.jobs.run_sensitivity()

    def mixed_precision(self) -> None:
        """Greedy mixed precision under ``budgetSpin`` MB (0: a sweep of six budgets)."""
        self.jobs.mixed_precision(self.budgetSpin.value() * 1e6)

    def cancel_job(self) -> None:
        """Stop the running job at its next yield."""
        self.jobs.cancel()

    def _on_job_started(self, label: str) -> None:
        self.progressBar.setValue(0)
        self.progressBar.setFormat(f"{label} %p%")
        self.progressBar.setEnabled(True)
        self.cancelButton.setEnabled(True)
        self.cancelAction.setEnabled(True)
        self.statusBar().showMessage(label)

    def _on_job_idle(self) -> None:
        self.progressBar.setValue(0)
        self.progressBar.setFormat("idle")
        self.progressBar.setEnabled(False)
        self.cancelButton.setEnabled(False)
        self.cancelAction.setEnabled(False)

    def _on_progress(self, fraction: float, message: str) -> None:
        if math.isfinite(fraction):
            v = int(1000 * max(0.0, min(1.0, fraction)))
            if abs(v - self.progressBar.value()) >= 10 or v == 1000:  # repaint at most 100x
                self.progressBar.setValue(v)
        fmt = f"{self.jobRunner.label}: {message} %p%" if message else self.progressBar.format()
        if fmt != self.progressBar.format():
            self.progressBar.setFormat(fmt)

    # -- files ---------------------------------------------------------------------------------
    def _settings(self) -> QSettings:
        return QSettings("quantviz", "quantviz")

    def _ask_open_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open model",
            str(self._settings().value("lastDir", "")),
            "Models (*.pt *.pth *.pt2 *.ts *.safetensors *.bin);;All files (*)",
        )
        if path:
            self._settings().setValue("lastDir", path.rsplit("/", 1)[0])
            self.open_model(path)

    def _ask_open_data(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open evaluation data",
            str(self._settings().value("lastDir", "")),
            "Data (*.npz *.pt);;All files (*)",
        )
        if path:
            self.open_data(path)

    @guarded("Could not open the data")
    def open_data(self, source: str) -> None:
        """Load evaluation data ``source`` for the current model (on the GUI thread: small)."""
        if self.session.handle is None:
            raise ValueError("open a model before its data")
        from quantviz.data import load_data

        data = load_data(source, self.session.handle)
        self.jobs.reset()
        self.session.set_data(source, data)
        self._start_stats()

    def _ask_load_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load configuration", "", "Configurations (*.json *.yaml *.yml)"
        )
        if path:
            self.load_config(path)

    @guarded("Could not load the configuration")
    def load_config(self, path: str) -> None:
        from quantviz.io import load_config

        cfg = load_config(path)
        unknown = cfg.unknown_keys(self.session.fqns) if self.session.handle else []
        if unknown:
            raise ValueError(f"{path}: layers {', '.join(unknown)} are not in this model")
        self.push_config(cfg, f"load {path.rsplit('/', 1)[-1]}")

    def _ask_save_config(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Save configuration",
            f"{self.session.current_name}.json",
            "JSON (*.json);;YAML (*.yaml)",
        )
        if path:
            self.save_config(path)

    @guarded("Could not save the configuration")
    def save_config(self, path: str) -> None:
        from dataclasses import replace

        from quantviz.io import save_config

        cfg = self.session.config
        if self.session.handle is not None:
            cfg = replace(cfg, model=self.session.handle.source)
        save_config(cfg, path)
        self.statusBar().showMessage(f"saved {path}", 4000)

    # -- closing -------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop every background job and wait for the threads; True if all ended."""
        ok = True
        for r in (
            self.jobRunner,
            self.statsRunner,
            self.sqnrRunner,
            self.loadRunner,
            self.histogram.runner,
            self.compareView.sqnrRunner,
            self.compareView.histRunner,
        ):
            ok = r.shutdown(timeout) and ok
        if self.exportDialog is not None:
            ok = self.exportDialog.shutdown(timeout) and ok
        return ok

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        if self.errors.last_box is not None:
            self.errors.last_box.close()
        super().closeEvent(event)


def schedule_open(window: MainWindow, source: str, data: str | None) -> None:
    """Open ``source`` right after the window is shown (first paint before heavy work)."""
    QTimer.singleShot(0, lambda: window.open_model(source, data))
