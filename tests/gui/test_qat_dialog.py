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


def test_progress_bar_follows_the_training(qtbot, window):
    """The status bar's bar is not full while the training steps are still running (it
    was: the evaluation before the training already filled it, then 'qat 8/57 100%')."""
    from PySide6.QtWidgets import QProgressBar

    win = window
    bar = win.findChild(QProgressBar, "progressBar")
    seen: list[tuple[int, str]] = []
    # connected after the status bar: sees the bar as the user sees it after each event
    win.jobRunner.progress.connect(lambda *_: seen.append((bar.value(), bar.format())))

    def fill() -> None:
        dlg = win.qatDialog
        dlg.epochsSpin.setValue(1)
        ok = dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
        qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, fill)
    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        win.qatAction.trigger()
    steps = win.controller.qat_result.steps
    training = [(v, f) for v, f in seen if f"/{steps} " in f and "qat " in f]
    assert training, seen[-5:]
    # half way through the training steps the bar is neither empty nor full
    half = next(v for v, f in training if f"qat {steps // 2}/{steps} " in f)
    assert 100 < half < 900
    assert "100%" not in training[0][1]
    values = [v for v, _ in seen]
    assert values == sorted(values)  # never goes backwards
