"""Run > Fine-tune (QAT)…: quantization-aware fine-tuning of a configuration.

The dialog asks for the method (STE, LSQ, PACT), epochs and learning rate; the controller's
``qat_job`` runs in the worker with progress and cancel like every other job. When it ends,
the fine-tuned weights are a new configuration (``<name> qat-<method>``) evaluated and
exported with them, and both points (before, after) are on the trade-off plot.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

__all__ = ["QatDialog", "install_qat_action"]

METHODS = (
    ("ste", "STE: grid re-fitted each step (any quantizer)"),
    ("lsq", "LSQ: learned step size (uniform)"),
    ("pact", "PACT: learned clipping (uniform, symmetric)"),
)


class QatDialog(QDialog):
    """Options of one fine-tuning run; :meth:`options` builds the ``QatOptions``."""

    def __init__(self, config_name: str, has_labels: bool, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Fine-tune (quantization-aware training)")
        self.setObjectName("qatDialog")
        form = QFormLayout(self)
        form.addRow(QLabel(f"Configuration: <b>{config_name}</b>"))
        self.methodCombo = QComboBox()
        self.methodCombo.setObjectName("qatMethodCombo")
        for key, label in METHODS:
            self.methodCombo.addItem(label, key)
        form.addRow("Method", self.methodCombo)
        self.epochsSpin = QSpinBox()
        self.epochsSpin.setObjectName("qatEpochsSpin")
        self.epochsSpin.setRange(1, 1000)
        self.epochsSpin.setValue(3)
        form.addRow("Epochs", self.epochsSpin)
        self.lrSpin = QDoubleSpinBox()
        self.lrSpin.setObjectName("qatLrSpin")
        self.lrSpin.setDecimals(5)
        self.lrSpin.setRange(1e-5, 1.0)
        self.lrSpin.setSingleStep(1e-4)
        self.lrSpin.setValue(1e-3)
        form.addRow("Learning rate (Adam)", self.lrSpin)
        loss = (
            "Loss: cross-entropy on the data's training split"
            if has_labels
            else "Loss: KL to the float model's outputs (the data has no training labels)"
        )
        self.lossLabel = QLabel(f"<i>{loss}</i>")
        form.addRow(self.lossLabel)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Fine-tune")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def options(self) -> Any:
        from quantviz.eval.qat import QatOptions

        return QatOptions(
            epochs=self.epochsSpin.value(),
            method=str(self.methodCombo.currentData()),
            lr=float(self.lrSpin.value()),
        )


def install_qat_action(win: Any) -> QAction:
    """Add Run > Fine-tune (QAT)… to ``win`` and report the outcome in the status bar."""
    ctl = win.controller

    def run() -> None:
        s = win.session
        if s.handle is None or s.data is None:
            win.statusBar().showMessage("Fine-tuning needs a model and data", 6000)
            return
        has_labels = getattr(s.data, "train_y", None) is not None
        dlg = QatDialog(s.current_name, has_labels, win)
        win.qatDialog = dlg
        accepted = dlg.exec() == QDialog.DialogCode.Accepted
        # the hidden dialog stayed the active window without a window manager that hands
        # the focus back: Esc (cancel) and F5 did nothing until a click in the window
        win.activateWindow()
        if not accepted:
            return
        try:
            options = dlg.options()
        except ValueError as exc:
            win.errors.report("Could not start fine-tuning", exc)
            return
        name = s.current_name
        win.jobs.start_job(lambda: ctl.qat_job(name, options), "fine-tuning")

    def done(kind: str) -> None:
        res = ctl.qat_result
        if kind != "qat" or res is None:
            return
        m = res.after.metric
        win.statusBar().showMessage(
            f"QAT ({res.options.method}): {m} {res.before.value:.4f} -> {res.after.value:.4f} "
            f"(float {res.before.baseline:.4f}); kept as configuration "
            f"'{ctl.qat_config}'",
            15000,
        )

    action = QAction("Fine-tune (QAT)…", win)
    action.setObjectName("qatAction")
    action.setToolTip(
        "Quantization-aware training of the current configuration (STE, LSQ or PACT); "
        "the fine-tuned weights become a new configuration"
    )
    action.triggered.connect(run)
    menu = getattr(win, "runMenu", None)
    if menu is not None:
        before = next((a for a in menu.actions() if a.isSeparator()), None)
        menu.insertAction(before, action)  # type: ignore[arg-type]
    win.jobDone.connect(done)
    win.qatAction = action
    return action
