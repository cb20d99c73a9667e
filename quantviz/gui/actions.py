"""The main window's actions, menus and toolbar (what each one does lives in the window and
the controller; this module only builds and places them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDoubleSpinBox, QLabel, QLineEdit, QMainWindow, QMenu, QToolBar

from quantviz.app import SENSITIVITY_BITS, SWEEP_BITS

__all__ = ["build_actions", "redo_shortcuts"]


def redo_shortcuts() -> list[QKeySequence]:
    """Ctrl+Shift+Z and Ctrl+Y, plus the platform's Redo keys, each bound once (binding
    one sequence twice makes Qt report an "ambiguous shortcut overload" and do nothing)."""
    out: list[QKeySequence] = []
    seen: set[str] = set()
    for k in (
        QKeySequence("Ctrl+Shift+Z"),
        QKeySequence("Ctrl+Y"),
        *QKeySequence.keyBindings(QKeySequence.StandardKey.Redo),
    ):
        text = k.toString()
        if text and text not in seen:
            seen.add(text)
            out.append(k)
    return out


def _bits_edit(
    win: QMainWindow, name: str, bits: tuple[int, ...], tip: str, sample: str = "2,3,4,5,6,8"
) -> QLineEdit:
    e = QLineEdit(",".join(map(str, bits)), win)
    e.setObjectName(name)
    # as wide as a typical list: the toolbar squeezed it to a few pixels at 1366 px ("5,6,8"
    # of 2,3,4,5,6,8 showed) and a wider one pushed Compare and Export off the toolbar
    e.setFixedWidth(e.fontMetrics().horizontalAdvance(sample) + 14)
    e.setToolTip(tip)
    return e


def build_actions(win: Any) -> None:
    """Create ``win``'s actions (attributes named ``…Action``), menus and toolbar."""

    def act(
        name: str, text: str, slot: Callable[[], Any], shortcut: Any = None, tip: str = ""
    ) -> QAction:
        a = QAction(text, win)
        a.setObjectName(name)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        if tip:
            a.setToolTip(tip)
            a.setStatusTip(tip)
        a.triggered.connect(lambda *_: slot())
        win.addAction(a)
        return a

    sa = win.sessionActions
    win.openModelAction = act(
        "openModelAction",
        "Open model…",
        win.ask_open_model,
        QKeySequence.StandardKey.Open,
        "Open a model file (TorchScript, .pt2, safetensors/state_dict + architecture) or a "
        "Hugging Face checkpoint's config.json",
    )
    win.openFolderAction = act(
        "openFolderAction",
        "Open model folder…",
        win.ask_open_model_folder,
        None,
        "Open a Hugging Face checkpoint folder (config.json + model.safetensors)",
    )
    win.openSourceAction = act(
        "openSourceAction",
        "Open model source…",
        win.ask_open_source,
        QKeySequence("Ctrl+Shift+M"),
        "Type a model source: sample:NAME, a path, or weights.safetensors::package.module:factory",
    )
    win.openDataAction = act(
        "openDataAction",
        "Open data…",
        win.ask_open_data,
        None,
        "Evaluation data: type sample:digits (sample:tiny_lm for the language model) or a path, "
        "or browse for a .npz / .pt file (x, optional y; token ids or .txt for a language model)",
    )
    win.loadConfigAction = act(
        "loadConfigAction",
        "Load configuration…",
        win.ask_load_config,
        None,
        "Replace the current configuration by a config file (undoable)",
    )
    win.saveConfigAction = act(
        "saveConfigAction",
        "Save configuration…",
        win.ask_save_config,
        QKeySequence("Ctrl+Alt+S"),
        "Write the current configuration as JSON or YAML",
    )
    win.importConfigAction = act(
        "importConfigAction",
        "Import configuration…",
        sa.ask_import_config,
        None,
        "Check a config file against the model and make it the current configuration",
    )
    win.exportAction = act(
        "exportAction",
        "Export…",
        win.show_export_dialog,
        QKeySequence("Ctrl+E"),
        "Write a configuration as JSON, YAML, safetensors, ONNX, AIMET or an HTML report",
    )
    win.saveSessionNowAction = act(
        "saveSessionNowAction",
        "Save session",
        lambda: sa.save(),
        QKeySequence.StandardKey.Save,
        "Save the session to its .quantviz file (asks for one the first time)",
    )
    win.saveSessionAction = act(
        "saveSessionAction",
        "Save session as…",
        lambda: sa.ask_save_session(),
        QKeySequence("Ctrl+Shift+S"),
        "Model, data, named configurations and results in one .quantviz file",
    )
    win.openSessionAction = act(
        "openSessionAction",
        "Open session…",
        sa.ask_open_session,
        QKeySequence("Ctrl+Shift+O"),
        "Reopen a .quantviz session file",
    )
    win.compareAction = act(
        "compareAction",
        "Compare…",
        win.show_compare,
        QKeySequence("Ctrl+K"),
        "Compare named configurations side by side",
    )
    win.quitAction = act("quitAction", "Quit", win.close, QKeySequence.StandardKey.Quit)
    win.evaluateAction = act(
        "evaluateAction",
        "Evaluate",
        win.evaluate,
        Qt.Key.Key_F5,
        "Evaluate the current configuration (F5)",
    )
    win.sweepAction = act(
        "sweepAction",
        "Uniform sweep",
        win.uniform_sweep,
        None,
        "The default weight scheme at each of the sweep bit-widths for every layer; every "
        "sweep is kept as its own curve",
    )
    win.sensitivityAction = act(
        "sensitivityAction",
        "Sensitivity",
        win.run_sensitivity,
        None,
        "Each layer alone at the sensitivity bit-width(s), the rest float: the metric drop",
    )
    win.mixedAction = act(
        "mixedPrecisionAction",
        "Mixed precision",
        win.mixed_precision,
        None,
        "Greedy per-layer bit allocation under the memory budget",
    )
    win.cancelAction = act(
        "cancelAction",
        "Cancel",
        win.cancel_job,
        Qt.Key.Key_Escape,
        "Stop the running job at its next step",
    )
    win.cancelAction.setEnabled(False)
    stack = win.undoStack
    win.undoAction = act("undoAction", "Undo", stack.undo, QKeySequence.StandardKey.Undo)
    win.redoAction = act("redoAction", "Redo", stack.redo)
    win.redoAction.setShortcuts(redo_shortcuts())
    win.undoAction.setEnabled(False)
    win.redoAction.setEnabled(False)
    stack.canUndoChanged.connect(win.undoAction.setEnabled)
    stack.canRedoChanged.connect(win.redoAction.setEnabled)
    stack.undoTextChanged.connect(lambda t: win.undoAction.setToolTip(f"Undo {t} (Ctrl+Z)"))
    stack.redoTextChanged.connect(
        lambda t: win.redoAction.setToolTip(f"Redo {t} (Ctrl+Shift+Z / Ctrl+Y)")
    )
    win.aboutAction = act("aboutAction", "About quantviz", win.show_about, None)
    win.helpAction = act(
        "helpAction", "Quick guide", win.show_help, QKeySequence.StandardKey.HelpContents
    )

    win.budgetSpin = QDoubleSpinBox(win)
    win.budgetSpin.setObjectName("budgetSpin")
    win.budgetSpin.setDecimals(3)
    win.budgetSpin.setRange(0.0, 1e6)
    win.budgetSpin.setSingleStep(0.005)
    win.budgetSpin.setSuffix(" MB")
    win.budgetSpin.setSpecialValueText("auto budgets")
    win.budgetSpin.setMaximumWidth(112)  # room for the bit-width fields on a 1366-px screen
    win.budgetSpin.setToolTip("Memory budget for Mixed precision (0 = a sweep of 6 budgets)")
    win.sweepBitsEdit = _bits_edit(
        win, "sweepBitsEdit", SWEEP_BITS, "Bit-widths of a uniform sweep, e.g. 2,3,4,6,8"
    )
    win.sensitivityBitsEdit = _bits_edit(
        win,
        "sensitivityBitsEdit",
        SENSITIVITY_BITS,
        "Bit-width(s) of the sensitivity analysis",
        "2,4,8",
    )

    mb = win.menuBar()
    f = mb.addMenu("&File")
    f.addAction(win.openModelAction)
    f.addAction(win.openFolderAction)
    win.samplesMenu = QMenu("Open &sample", win)
    win.samplesMenu.setObjectName("samplesMenu")
    from quantviz.model.samples import SAMPLES

    for name, info in SAMPLES.items():
        a = QAction(f"{name} — {info.description}", win.samplesMenu)
        a.setObjectName(f"sample_{name}")
        a.setData(f"sample:{name}")
        a.triggered.connect(lambda *_, src=f"sample:{name}": win.open_model(src))
        win.samplesMenu.addAction(a)
    f.addMenu(win.samplesMenu)
    f.addAction(win.openSourceAction)
    f.addAction(win.openDataAction)
    f.addSeparator()
    f.addAction(win.openSessionAction)
    f.addMenu(sa.recentMenu)
    f.addAction(win.saveSessionNowAction)
    f.addAction(win.saveSessionAction)
    f.addSeparator()
    for a in (win.loadConfigAction, win.importConfigAction, win.saveConfigAction):
        f.addAction(a)
    f.addAction(win.exportAction)
    f.addSeparator()
    f.addAction(win.quitAction)
    e = mb.addMenu("&Edit")
    e.addAction(win.undoAction)
    e.addAction(win.redoAction)
    v = mb.addMenu("&View")
    win.darkAction = QAction("Dark palette", win)
    win.darkAction.setObjectName("darkAction")
    win.darkAction.setCheckable(True)
    win.darkAction.setShortcut(QKeySequence("Ctrl+Shift+D"))
    win.darkAction.toggled.connect(win.set_dark)
    win.addAction(win.darkAction)
    v.addAction(win.darkAction)
    v.addAction(win.compareAction)
    win.curvesMenu = QMenu("Remove &curve", win)
    win.curvesMenu.setObjectName("curvesMenu")
    win.curvesMenu.aboutToShow.connect(win.rebuild_curves_menu)
    v.addMenu(win.curvesMenu)
    r = win.runMenu = mb.addMenu("&Run")  # other modules add their runs before Cancel
    for a in (win.evaluateAction, win.sweepAction, win.sensitivityAction, win.mixedAction):
        r.addAction(a)
    r.addSeparator()
    r.addAction(win.budgetAction)
    r.addAction(win.cancelAction)
    h = mb.addMenu("&Help")
    h.addAction(win.helpAction)
    h.addAction(win.aboutAction)

    tb = QToolBar("Main", win)
    tb.setObjectName("mainToolBar")
    tb.setMovable(False)
    tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    for a in (win.openModelAction, win.openDataAction, win.compareAction, win.exportAction):
        a.setIconText(a.text().rstrip("…"))  # the buttons without the menus' ellipsis
    for a in (win.openModelAction, win.openDataAction):
        tb.addAction(a)
    tb.addSeparator()
    tb.addAction(win.undoAction)
    tb.addAction(win.redoAction)
    tb.addSeparator()
    tb.addAction(win.evaluateAction)
    tb.addAction(win.sweepAction)
    tb.addWidget(win.sweepBitsEdit)
    tb.addAction(win.sensitivityAction)
    tb.addWidget(win.sensitivityBitsEdit)
    tb.addAction(win.mixedAction)
    tb.addWidget(QLabel(" budget ", win))
    tb.addWidget(win.budgetSpin)
    tb.addSeparator()
    tb.addAction(win.cancelAction)
    tb.addSeparator()
    tb.addAction(win.compareAction)
    tb.addAction(win.exportAction)
    win.addToolBar(tb)
    win.toolBar = tb
