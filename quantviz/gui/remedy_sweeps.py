"""Run > Uniform sweep with and without the remedies, and per method: one curve each.

The plain Uniform sweep uses the current configuration's transforms and the default
weight scheme's rounding (AdaRound / GPTQ). These actions sweep the same bit-widths with
them and without them (nearest rounding, no transforms) — two curves in one job, each its
own legend entry on the trade-off plot — or without them only. They are enabled when the
current configuration has transforms or a non-nearest default rounding.

Run > Uniform sweep per method… asks for the methods (checkboxes: nearest, adaround, gptq,
cle+bias_correction, smoothquant, hadamard, and a field for others such as
smoothquant+gptq or smoothquant(alpha=0.8)+gptq) and sweeps the bit-widths once per method
in one background job: one legend-labelled curve each. A transform the current configuration
has keeps the configuration's parameters (the checkbox and the legend show them:
smoothquant(alpha=0.8)) unless the typed method gives its own. Methods that do not apply to
the model are named in the status bar and skipped.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from quantviz.core.methods import (
    DEFAULT_METHODS,
    METHOD_CHOICES,
    Method,
    configured_choice,
    parse_methods,
    split_top,
)
from quantviz.core.spec import TransformEntry, transform_label

__all__ = ["MethodsDialog", "install_method_sweep", "install_remedy_sweeps"]

#: what each checkbox's tooltip says
METHOD_NOTES = {
    "nearest": "round to nearest, no transforms (the plain baseline curve)",
    "adaround": "AdaRound: learned rounding from calibration inputs (Linear / Conv2d)",
    "gptq": "GPTQ: error-compensating rounding from calibration inputs (Linear / Conv2d)",
    "cle+bias_correction": "cross-layer equalization then bias correction (CNNs: conv pairs "
    "with ReLU between)",
    "smoothquant": "activation outliers migrated into the weights (linear layers)",
    "hadamard": "Hadamard rotations fused into the weights (Llama decoders, power-of-two "
    "linear pairs)",
}


class MethodsDialog(QDialog):
    """Checkboxes for the methods of a per-method sweep; :meth:`methods` parses them, the
    transforms named without parameters taking ``configured``'s (the configuration's)."""

    def __init__(
        self,
        bits: tuple[int, ...],
        scheme: str,
        parent: QWidget | None = None,
        configured: tuple[TransformEntry, ...] = (),
    ):
        super().__init__(parent)
        self.configured = configured
        self.setWindowTitle("Uniform sweep per method")
        self.setObjectName("methodsDialog")
        lay = QVBoxLayout(self)
        lay.addWidget(
            QLabel(
                f"Bit-widths {','.join(map(str, bits))}, every layer's weights at {scheme}: "
                "one curve per method"
            )
        )
        tuned = transform_label(configured)
        if "(" in tuned:  # some configured parameter is not the default
            note = QLabel(f"Transforms named without parameters take the configuration's: {tuned}")
            note.setObjectName("methodsParamsNote")
            note.setWordWrap(True)
            lay.addWidget(note)
        self.checks: dict[str, QCheckBox] = {}
        for name in METHOD_CHOICES:
            box = QCheckBox(configured_choice(name, configured))
            box.setObjectName(f"method_{name}")
            box.setToolTip(METHOD_NOTES.get(name, ""))
            box.setChecked(name in DEFAULT_METHODS)
            lay.addWidget(box)
            self.checks[name] = box
        self.extraEdit = QLineEdit()
        self.extraEdit.setObjectName("methodsExtraEdit")
        self.extraEdit.setPlaceholderText(
            "more, comma-separated: smoothquant+gptq, cle(iterations=5)+adaround"
        )
        lay.addWidget(self.extraEdit)
        # a bad method is named here and the dialog stays open: closing it on the error
        # lost the typed methods and the ticks
        self.errorLabel = QLabel()
        self.errorLabel.setObjectName("methodsError")
        self.errorLabel.setWordWrap(True)
        self.errorLabel.setStyleSheet("color: #d0342c;")
        self.errorLabel.hide()
        lay.addWidget(self.errorLabel)
        self.extraEdit.textEdited.connect(lambda *_: self.errorLabel.hide())
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Sweep")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

    def accept(self) -> None:
        try:
            if not self.methods():
                raise ValueError("tick or type at least one method")
        except ValueError as exc:
            self.errorLabel.setText(str(exc))
            self.errorLabel.show()
            self.extraEdit.setFocus()
            return
        super().accept()

    def methods(self) -> tuple[Method, ...]:
        """The ticked methods then the typed ones; ``ValueError`` naming a bad one."""
        picked = [n for n, box in self.checks.items() if box.isChecked()]
        typed = split_top(self.extraEdit.text(), ",")  # commas in brackets do not split
        picked += [p for p in typed if p.strip()]
        return parse_methods(picked, configured=self.configured)


def install_method_sweep(win: Any) -> QAction:
    """Add Run > Uniform sweep per method… (``sweepMethodsAction``) to ``win``."""
    ctl = win.controller
    s = win.session

    def run() -> None:
        bits = win._bits(win.sweepBitsEdit, "sweep bit-widths")
        if bits is None:
            return
        spec = ctl.default_weight_spec()
        scheme = spec.with_(rounding="nearest").short().split(" ", 1)[1]
        dlg = MethodsDialog(bits, scheme, win, s.config.transforms)
        win.methodsDialog = dlg
        accepted = dlg.exec() == QDialog.DialogCode.Accepted
        win.activateWindow()  # see qat_dialog: the hidden dialog kept the focus
        if not accepted:
            return
        try:
            methods = dlg.methods()
        except ValueError as exc:
            win.errors.report("Could not start the sweep per method", exc)
            return
        cluster = win.jobs.cluster_address or None
        labels = [m.label for m in methods]
        win.jobs.start_job(
            lambda: ctl.methods_sweep_job(bits, labels, cluster=cluster), "the sweep per method"
        )

    def done(kind: str) -> None:
        job = win.jobs.job
        if kind != "method sweep" or job is None:
            return
        skipped = job.meta.get("skipped") or {}
        ran = [m for m in job.meta.get("methods", []) if m not in skipped]
        msg = f"Sweep per method: {', '.join(ran) or 'nothing'} swept"
        if skipped:
            msg += "; skipped " + "; ".join(f"{m} ({why})" for m, why in skipped.items())
        win.statusBar().showMessage(msg, 20000)

    action = QAction("Uniform sweep per method…", win)
    action.setObjectName("sweepMethodsAction")
    action.setToolTip(
        "The sweep bit-widths once per method (nearest, GPTQ, AdaRound, CLE + bias "
        "correction, SmoothQuant, Hadamard ...): one curve each"
    )
    action.triggered.connect(run)

    def update(*_: Any) -> None:
        action.setEnabled(s.handle is not None)

    s.model_changed.connect(update)
    win.jobDone.connect(done)
    update()
    win.sweepMethodsAction = action
    return action


def install_remedy_sweeps(win: Any) -> tuple[QAction, QAction]:
    """Add ``sweepBothAction`` and ``sweepWithoutAction`` to the Run menu of ``win``."""
    ctl = win.controller
    s = win.session

    def remedies() -> str:
        cfg = s.config
        default = cfg.default.weight
        rounding = default.rounding if default is not None else "nearest"
        transforms = transform_label(cfg.transforms)
        parts = [p for p in (transforms, rounding if rounding != "nearest" else "") if p]
        return " + ".join(parts)

    def start(mode: str) -> None:
        bits = win._bits(win.sweepBitsEdit, "sweep bit-widths")
        if bits is None:
            return
        cluster = win.jobs.cluster_address or None
        win.jobs.start_job(lambda: ctl.sweep_job(bits, cluster=cluster, remedies=mode), "the sweep")

    both = QAction("Uniform sweep with and without transforms", win)
    both.setObjectName("sweepBothAction")
    both.triggered.connect(lambda: start("both"))
    without = QAction("Uniform sweep without transforms", win)
    without.setObjectName("sweepWithoutAction")
    without.triggered.connect(lambda: start("without"))

    def update(*_: Any) -> None:
        what = remedies() if s.handle is not None else ""
        for a in (both, without):
            a.setEnabled(bool(what))
        if what:
            both.setToolTip(
                f"The sweep bit-widths with {what} and without (nearest rounding, no "
                "transforms): one curve each"
            )
            without.setToolTip(f"The sweep bit-widths without {what}: nearest rounding")
        else:
            tip = "The current configuration has no transforms and rounds to nearest"
            both.setToolTip(tip)
            without.setToolTip(tip)

    per_method = install_method_sweep(win)
    menu = getattr(win, "runMenu", None)
    if menu is not None:
        after = getattr(win, "sweepAction", None)
        actions = menu.actions()
        i = actions.index(after) + 1 if after in actions else len(actions)
        before = actions[i] if i < len(actions) else None
        menu.insertActions(before, [both, without, per_method])  # type: ignore[arg-type]
    s.config_changed.connect(update)
    s.model_changed.connect(update)
    s.current_name_changed.connect(update)
    update()
    win.sweepBothAction, win.sweepWithoutAction = both, without
    return both, without
