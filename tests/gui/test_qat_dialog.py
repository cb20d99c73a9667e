"""Run > Fine-tune (QAT)…: as a user, on the bundled sample (issue 13)."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QDialogButtonBox


def test_fine_tune_from_the_run_menu(qtbot, window):
    win = window
    s = win.session
    # the user sets 2-bit weights on every layer (per-channel is the default granularity)
    win.controls.bitsSpin.lineEdit().selectAll()
    qtbot.keyClicks(win.controls.bitsSpin.lineEdit(), "2")
    qtbot.keyClick(win.controls.bitsSpin.lineEdit(), Qt.Key.Key_Return)
    s.apply_to_all("weight", s.config.resolve(s.fqns[0]).weight)
    assert {s.config.resolve(f).weight.bits for f in s.fqns} == {2}
    name = s.current_name
    assert win.qatAction in win.runMenu.actions()

    def fill() -> None:
        dlg = win.qatDialog
        assert "cross-entropy on the data's training split" in dlg.lossLabel.text()
        dlg.methodCombo.setCurrentIndex(dlg.methodCombo.findData("lsq"))
        dlg.epochsSpin.setValue(2)
        ok = dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
        qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, fill)
    with qtbot.waitSignal(win.jobDone, timeout=120_000) as blocker:
        win.qatAction.trigger()
    assert blocker.args == ["qat"]
    new = f"{name} qat-lsq"
    assert new in win.configs.names() and new in s.tuned
    res = win.controller.qat_result
    assert res.options.method == "lsq" and res.options.epochs == 2
    assert res.after.value > res.before.value
    msg = win.statusBar().currentMessage()
    assert "QAT (lsq)" in msg and f"'{new}'" in msg
    # both points are on the trade-off plot's results
    assert [e.name for e in s.results][-2:] == [name, new]
    # evaluating the kept configuration again gives the same number (its weights are kept)
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        win.jobs.evaluate(new)
    assert s.results[-1].name == new and s.results[-1].result.value == res.after.value


def test_cancelled_dialog_starts_nothing(qtbot, window):
    win = window

    def cancel() -> None:
        dlg = win.qatDialog
        btn = dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Cancel)
        qtbot.mouseClick(btn, Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, cancel)
    win.qatAction.trigger()
    assert not win.jobs.runner.running and win.session.tuned == {}
