"""Run > Uniform sweep with and without the remedies: one curve per method.

The plain Uniform sweep uses the current configuration's transforms and the default
weight scheme's rounding (AdaRound / GPTQ). These actions sweep the same bit-widths with
them and without them (nearest rounding, no transforms) — two curves in one job, each its
own legend entry on the trade-off plot — or without them only. They are enabled when the
current configuration has transforms or a non-nearest default rounding.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QAction

from quantviz.core.spec import transform_label

__all__ = ["install_remedy_sweeps"]


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

    menu = getattr(win, "runMenu", None)
    if menu is not None:
        after = getattr(win, "sweepAction", None)
        actions = menu.actions()
        i = actions.index(after) + 1 if after in actions else len(actions)
        before = actions[i] if i < len(actions) else None
        menu.insertActions(before, [both, without])  # type: ignore[arg-type]
    s.config_changed.connect(update)
    s.model_changed.connect(update)
    s.current_name_changed.connect(update)
    update()
    win.sweepBothAction, win.sweepWithoutAction = both, without
    return both, without
