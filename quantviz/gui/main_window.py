"""The main window: layout and the wiring between the controller, the views and the workers.

Layout: layer table + configurations (left), weight histogram + trade-off plot (centre),
controls + activation histogram + channel ranges (right). Actions and menus are built in
:mod:`quantviz.gui.actions`, the status bar in :mod:`quantviz.gui.status_bar`; every number
comes from :class:`quantviz.app.AppController` and long work runs its jobs in workers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QUndoStack
from PySide6.QtWidgets import (
    QDockWidget,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QWidget,
)

from quantviz.app import AppController, Job
from quantviz.core.spec import ModelConfig, QuantSpec
from quantviz.gui.actions import build_actions
from quantviz.gui.activation_view import ActivationView
from quantviz.gui.budget_panel import install_budget_dock
from quantviz.gui.cluster_menu import ClusterMenu
from quantviz.gui.commands import SetConfigCommand
from quantviz.gui.compare import CompareView
from quantviz.gui.config_list import ConfigList
from quantviz.gui.debug_view import install_debug_view
from quantviz.gui.dialogs import ask_architecture, ask_unsaved
from quantviz.gui.errors import ErrorReporter, guarded
from quantviz.gui.files import FileActions
from quantviz.gui.histogram_view import HistogramView
from quantviz.gui.jobs import JobController
from quantviz.gui.layer_controls import LayerControls
from quantviz.gui.layer_table import LayerTableWidget
from quantviz.gui.layout import install_panel_toggles, scrolled
from quantviz.gui.override_editor import OverrideEditor
from quantviz.gui.qat_dialog import install_qat_action
from quantviz.gui.remedy_sweeps import install_remedy_sweeps
from quantviz.gui.session_actions import SessionActions
from quantviz.gui.status_bar import StatusBar
from quantviz.gui.tradeoff_plot import TradeoffPlot
from quantviz.gui.transforms_panel import TransformsPanel
from quantviz.gui.view_actions import ViewActions
from quantviz.gui.workers import Runner
from quantviz.io.session_file import SESSION_SUFFIX
from quantviz.session import ResultEntry, apply_to_all, reset_layers, set_layer_spec

__all__ = ["MainWindow"]


class MainWindow(FileActions, ViewActions, QMainWindow):
    """The quantviz main window. Signals for tests and scripts: ``modelLoaded(handle)``,
    ``modelLoadFailed(message)``, ``statsReady()``, ``jobDone(kind)``, ``jobFailed(kind)``.
    """

    modelLoaded = Signal(object)
    modelLoadFailed = Signal(str)
    dataLoaded = Signal(str)
    statsReady = Signal()
    jobDone = Signal(str)
    jobFailed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowTitle("quantviz")
        self.resize(*_initial_size())
        self.controller = AppController()
        self.session = s = self.controller.session
        self.errors = ErrorReporter(self)
        self.undoStack = QUndoStack(self)
        self.undoStack.setObjectName("undoStack")
        #: asked before code runs from a model file (tests replace it)
        self.confirm_trust: Callable[[str], bool] = self._ask_trust
        #: asked on close with unsaved work: "save", "discard" or "cancel" (tests replace it)
        self.confirm_close: Callable[[], str] = lambda: ask_unsaved(self)
        #: asked for ``package.module:factory`` when a file holds only weights
        self.ask_arch: Callable[[str], str | None] = lambda path: ask_architecture(self, path)
        self._pending: Job | None = None
        self.exportDialog: Any = None

        # -- views ------------------------------------------------------------------------
        ctl = self.controller
        self.table = LayerTableWidget(ctl, self)
        self.configs = ConfigList(s, self)
        self.histogram = HistogramView(ctl, self)
        self.activations = ActivationView(ctl, self)
        self.controls = LayerControls(ctl, self)
        self.transformsPanel = TransformsPanel(ctl, self)
        self.tradeoff = TradeoffPlot(s, self)
        self.configs.errorRaised.connect(self.errors.report)
        self.histogram.failed.connect(lambda m: self.errors.report("Histogram", m))
        self.activations.failed.connect(lambda m: self.errors.report("Activation statistics", m))

        left = QSplitter(Qt.Orientation.Vertical)
        self.overrides = OverrideEditor(ctl, self.push_config, self)
        left.addWidget(self.table)
        left.addWidget(scrolled(self.overrides, "overridesScroll"))
        left.addWidget(self.configs)
        left.setSizes([560, 240, 150])
        for i, stretch in enumerate((1, 0, 0)):  # a short screen shrinks the table first:
            left.setStretchFactor(i, stretch)  # the override list kept half a row at 768 px
        centre = QSplitter(Qt.Orientation.Vertical)
        centre.addWidget(self.histogram)
        centre.addWidget(self.tradeoff)
        centre.setSizes([480, 360])
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(scrolled(self.controls, "controlsScroll"))
        right.addWidget(scrolled(self.transformsPanel, "transformsScroll"))
        right.addWidget(self.activations)
        right.addWidget(self.histogram.rangePlot)
        right.setSizes([360, 120, 260, 200])
        for i, stretch in enumerate((0, 0, 1, 1)):  # a short screen shrinks the plots first
            right.setStretchFactor(i, stretch)
        av = self.activations
        for label in (self.transformsPanel.notesLabel, av.info, av.compareLabel):
            label.release_on_leave(right)  # the steady notes fit their text once left
        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(centre)
        main.addWidget(right)
        main.setSizes([640, 660, 380])
        main.setStretchFactor(0, 3)
        main.setStretchFactor(1, 3)
        main.setStretchFactor(2, 2)
        self.setCentralWidget(main)

        # -- compare (a dock, floating by default; see quantviz.gui.compare) ----------------
        self.compareView = CompareView(ctl, self)
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
        self.dataRunner = Runner("dataRunner", self)
        self.sqnrRunner = Runner("sqnrRunner", self)
        self.jobs = JobController(ctl, self.errors, self)
        self.jobRunner = self.jobs.runner
        self.jobs.jobDone.connect(self.jobDone)
        self.jobs.jobFailed.connect(self.jobFailed)
        self.jobs.statusMessage.connect(self.statusBar().showMessage)
        self.loadRunner.finished.connect(self._on_loaded)
        self.loadRunner.failed.connect(self._on_load_failed)
        self.loadRunner.started.connect(lambda label: self.statusBar().showMessage(label))
        self.dataRunner.finished.connect(self._on_data)
        self.dataRunner.failed.connect(lambda e: self.errors.report("Could not open the data", e))
        self.statsRunner.finished.connect(self._on_stats)
        self.statsRunner.failed.connect(self._on_stats_failed)
        self.sqnrRunner.yielded.connect(lambda item: ctl.sqnr.record([item]))
        self.sqnrRunner.failed.connect(lambda e: self.errors.report("Layer SQNR", e))

        self.sessionActions = SessionActions(self)
        self.budgetPanel = install_budget_dock(self)
        build_actions(self)
        install_debug_view(self)  # error propagation + proxies dock, Run menu actions
        install_qat_action(self)  # Run > Fine-tune (QAT)…
        install_remedy_sweeps(self)  # Run > Uniform sweep with and without transforms
        install_panel_toggles(self)  # View > Panels: show/hide each dock and the toolbar
        self.clusterMenu = ClusterMenu(self, self.jobs, self.runMenu)
        self.status = StatusBar(self, ctl)
        self.progressBar = self.status.progressBar
        self.cancelButton = self.status.cancelButton
        self.modelLabel = self.status.modelLabel
        self.paramsLabel = self.status.paramsLabel
        self.floatSizeLabel = self.status.floatSizeLabel
        self.currentSizeLabel = self.status.currentSizeLabel
        self.status.serve(self.jobs, self.sessionActions, self.cancelAction)

        # -- session <-> UI -------------------------------------------------------------------
        self.controls.specEdited.connect(self._on_spec_edited)
        self.controls.applyAllRequested.connect(self._on_apply_all)
        self.controls.resetRequested.connect(self._on_reset)
        tp = self.transformsPanel
        tp.transformsEdited.connect(
            lambda t: self.push_config(self.session.config.with_transforms(t), "Transforms")
        )
        tp.computeRequested.connect(lambda: self.jobs.transforms())
        self.activations.captureRequested.connect(lambda: self.jobs.transforms())
        self.jobs.jobDone.connect(
            lambda *_: (
                self.histogram.request_update(),
                tp.update_notes(),
                self.activations.refresh(),
            )
        )
        self.tradeoff.entryClicked.connect(self._on_entry_clicked)
        s.model_changed.connect(self._on_model_changed)
        s.config_changed.connect(self._on_config_changed)
        s.current_name_changed.connect(lambda *_: self.status.update_model())
        self.status.update_model()

    # -- theme ---------------------------------------------------------------------------------
    def set_dark(self, dark: bool) -> None:
        """Switch the application and plot palettes (light / dark) in place."""
        from PySide6.QtWidgets import QApplication

        from quantviz.gui.theme import apply_theme

        apply_theme(QApplication.instance(), dark)  # type: ignore[arg-type]
        views = (self.histogram, self.activations, self.tradeoff, self.compareView)
        for view in (*views, self.debugView):
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
        until the new one is ready, and stays if loading fails. Unsaved configurations or
        results of the open model are asked about first (Save / Discard / Cancel)."""
        if not self.may_discard(
            lambda: self.open_model(source, data, trust=trust, check=check, after=after)
        ):
            return
        job = self.controller.open_model_job(source, data, trust=trust, check=check, after=after)
        self._start_load(job)

    def may_discard(self, then: Callable[[], Any] | None = None) -> bool:
        """True when the open session may be replaced now: nothing unsaved, or the user
        discarded it. "Save" starts a background save and returns False: ``then`` (the
        action asked about) runs again once the save succeeded (a failed one keeps all)."""
        s = self.session
        if s.handle is None or not s.modified:
            return True
        if self.sessionActions.saving:  # decide once the save under way has ended
            if then is not None:
                self.sessionActions.after_save(then)
            self.statusBar().showMessage("Waiting for the session to be saved…", 4000)
            return False
        answer = self.confirm_close()
        if answer == "save":
            self.sessionActions.save(then)
            return False
        return answer == "discard"

    def _start_load(self, job: Job) -> None:
        self._pending = job
        self.loadRunner.start(job.label, job.factory)

    def _ask_trust(self, message: str) -> bool:
        return (
            QMessageBox.question(
                self,
                "Run code from this file?",
                f"{message}\n\nLoading it runs code from the file. Only do this for files you "
                "trust. Load it anyway?",
            )
            == QMessageBox.StandardButton.Yes
        )

    def _on_load_failed(self, exc: BaseException) -> None:
        from quantviz.model import ArchitectureRequired, TrustRequired

        job = self._pending
        src = job.meta.get("source", "model") if job is not None else "model"
        if isinstance(exc, TrustRequired) and job is not None and self.confirm_trust(str(exc)):
            self._retry_trusted(job)
            return
        if job is not None and isinstance(exc, ArchitectureRequired) and "::" not in src:
            arch = self.ask_arch(src)
            if arch:
                self.open_model(f"{src}::{arch}")
                return
        self._pending = None
        self.statusBar().showMessage(f"Could not open {src}", 5000)
        self.errors.report(f"Could not open {src}", exc)
        self.modelLoadFailed.emit(str(exc))

    def _retry_trusted(self, job: Job) -> None:
        if job.kind == "open session":
            self.sessionActions.open_session(job.meta["path"], trust=True)
        else:
            self.open_model(job.meta["source"], trust=True, **job.meta.get("open", {}))

    @guarded("Could not open the model")
    def _on_loaded(self, opened: Any) -> None:
        job = self._pending
        self._pending = None
        for r in (self.statsRunner, self.sqnrRunner):
            r.cancel()
        self.jobs.reset()
        self.undoStack.clear()
        if job is not None:
            job.on_done(opened)
        handle = opened.handle
        self.statusBar().showMessage(f"Opened {handle.name}", 4000)
        self.budgetSpin.setValue(round(handle.float_bytes / 4e6, 3))
        self.modelLoaded.emit(handle)
        self._start_stats()

    def _start_stats(self) -> None:
        job = self.controller.calibration_job()
        if job is None:
            self.activations.refresh()
            return
        self._stats_job = job
        self.statsRunner.start(job.label, job.factory)

    def _on_stats(self, stats: Any) -> None:
        self._stats_job.on_done(stats)
        self.statsReady.emit()

    def _on_stats_failed(self, exc: BaseException) -> None:
        self.controller.collecting_stats = False
        self.activations.refresh()
        self.errors.report("Calibration statistics", exc)

    def _on_model_changed(self, handle: Any) -> None:
        self.setWindowTitle(f"quantviz — {handle.name}" if handle is not None else "quantviz")
        self.status.update_model()

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
        self.status.update_model()
        self._start_sqnr()

    def _start_sqnr(self) -> None:
        ctl = self.controller
        if self.session.handle is None:
            return
        todo = ctl.sqnr_todo(skip=self.session.selection[:1])  # the histogram does that one
        if not todo:
            return
        job = ctl.sqnr_job(todo)
        if ctl.sqnr_inline(todo):
            self.sqnrRunner.run_inline(job.label, job.factory)
        else:
            self.sqnrRunner.start(job.label, job.factory)

    @guarded("Could not switch configuration")
    def _on_entry_clicked(self, entry: ResultEntry) -> None:
        name = self.session.adopt(entry)
        src = self.session.adopted_weights_of(name) if name != entry.name else None
        note = f", with the fine-tuned weights of {src}" if src else ""
        self.statusBar().showMessage(f"{name} is now the current configuration{note}", 8000)

    def evaluate_named(self, name: str) -> None:
        """Evaluate configuration ``name`` (queued behind a running job); the current
        configuration stays current and no view switches to ``name``."""
        self.jobs.evaluate(name)

    # -- jobs (see jobs.py) --------------------------------------------------------------
    def _bits(self, edit: Any, what: str) -> tuple[int, ...] | None:
        from quantviz.eval.sweeps import parse_bits

        try:
            return parse_bits(edit.text(), field_name=what)
        except ValueError as exc:
            self.errors.report(f"Could not start the {what}", exc)
            return None

    def evaluate(self) -> None:
        """Evaluate the current configuration in the background (F5)."""
        self.jobs.evaluate()

    def uniform_sweep(self) -> None:
        """Every layer at the default weight scheme at the sweep bit-widths: a new curve."""
        bits = self._bits(self.sweepBitsEdit, "sweep bit-widths")
        if bits is not None:
            self.jobs.uniform_sweep(bits)

    def run_sensitivity(self) -> None:
        """Each layer alone at the sensitivity bit-width(s): fills the Sens. column."""
        bits = self._bits(self.sensitivityBitsEdit, "sensitivity bit-widths")
        if bits is not None:
            self.jobs.run_sensitivity(bits)

    def mixed_precision(self) -> None:
        """Greedy mixed precision under ``budgetSpin`` MB (0: a sweep of six budgets)."""
        self.jobs.mixed_precision(self.budgetSpin.value() * 1e6)

    def cancel_job(self) -> None:
        """Esc: stop the running job at its next yield, else a running save (the save
        indicator's Stop stops a save while a job runs)."""
        self.status.cancel()

    # -- closing -------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop every background job and wait for the threads; True if all ended."""
        ok = True
        for r in (
            self.jobRunner,
            self.sessionActions.saveRunner,
            self.statsRunner,
            self.sqnrRunner,
            self.loadRunner,
            self.dataRunner,
            self.histogram.runner,
            self.activations.runner,
            self.compareView.sqnrRunner,
            self.compareView.histRunner,
        ):
            ok = r.shutdown(timeout) and ok
        if self.exportDialog is not None:
            ok = self.exportDialog.shutdown(timeout) and ok
        self.controller.close_clusters()
        return ok

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.may_discard(self.close):
            event.ignore()
            return
        self.shutdown()
        if self.errors.last_box is not None:
            self.errors.last_box.close()
        super().closeEvent(event)


def _initial_size() -> tuple[int, int]:
    """1680 x 1000, or 95% of the screen's free area when that is smaller (1366 x 768)."""
    from PySide6.QtGui import QGuiApplication

    screen = QGuiApplication.primaryScreen()
    if screen is None:
        return 1680, 1000
    g = screen.availableGeometry()
    return min(1680, int(g.width() * 0.95)), min(1000, int(g.height() * 0.95))


def schedule_open(window: MainWindow, source: str, data: str | None) -> None:
    """Open ``source`` right after the window is shown (first paint before heavy work); a
    saved session (``*.quantviz``, e.g. ``quantviz mine.quantviz``) opens as a session."""
    if data is None and source.lower().endswith(SESSION_SUFFIX):
        QTimer.singleShot(0, lambda: window.sessionActions.open_session(source))
        return
    QTimer.singleShot(0, lambda: window.open_model(source, data))
