"""Run > Fine-tune (QAT)…: as a user, on the bundled sample (issue 13)."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox


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


def _sqnr_column(win) -> list[str]:
    from quantviz.gui.layer_table import C_SQNR

    m = win.table.model
    return [m.index(r, C_SQNR).data() for r in range(m.rowCount())]


def _double_click_config(qtbot, win, name: str) -> None:
    lst = win.configs.list
    item = next(
        lst.item(i)
        for i in range(lst.count())
        if lst.item(i).data(Qt.ItemDataRole.UserRole) == name
    )
    pos = lst.visualItemRect(item).center()
    qtbot.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseDClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert win.session.current_name == name


def test_evaluating_the_tuned_config_keeps_the_sqnr_column_of_the_others(qtbot, window):
    """Evaluating '<name> qat-ste' (F5) put the fine-tuned weights' SQNR into the table's
    cache for the same scheme, so the original configuration's SQNR column changed."""
    win = window
    s = win.session
    win.controls.bitsSpin.lineEdit().selectAll()
    qtbot.keyClicks(win.controls.bitsSpin.lineEdit(), "2")
    qtbot.keyClick(win.controls.bitsSpin.lineEdit(), Qt.Key.Key_Return)
    qtbot.mouseClick(win.controls.applyAllButton, Qt.MouseButton.LeftButton)
    assert {s.config.resolve(f).weight.bits for f in s.fqns} == {2}
    qtbot.waitUntil(lambda: "…" not in _sqnr_column(win), timeout=30_000)
    name = s.current_name
    before = _sqnr_column(win)
    exact = [win.controller.layer_sqnr(f) for f in s.fqns]

    def fill() -> None:
        dlg = win.qatDialog
        dlg.epochsSpin.setValue(1)
        dlg.lrSpin.setValue(0.01)  # weights that move enough to change the SQNR
        ok = dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
        qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, fill)
    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        win.qatAction.trigger()
    new = f"{name} qat-ste"
    _double_click_config(qtbot, win, new)
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5_000)
    with qtbot.waitSignal(win.jobDone, timeout=60_000) as blocker:
        qtbot.keyClick(win, Qt.Key.Key_F5)
    assert blocker.args == ["evaluate"] and s.results[-1].name == new
    # the evaluation measured other numbers on the fine-tuned weights ...
    tuned_sqnr = [lay["weight_sqnr_db"] for lay in s.results[-1].result.layers]
    assert any(abs(a - b) > 1e-3 for a, b in zip(tuned_sqnr, exact, strict=True))
    # ... which do not replace the original weights' SQNR shown for the first configuration
    _double_click_config(qtbot, win, name)
    assert [win.controller.layer_sqnr(f) for f in s.fqns] == exact
    assert _sqnr_column(win) == before


def test_escape_right_after_the_dialog_cancels_the_fine_tuning(qtbot, window):
    """Fine-tune pressed in the dialog, then Esc in the window: the training stops and no
    configuration is added (the closed dialog stayed the active window, so Esc did nothing
    until the user clicked into the main window)."""
    win = window
    s = win.session
    names = set(s.configs)

    def fill() -> None:
        dlg = win.qatDialog
        dlg.epochsSpin.setValue(50)  # long enough to be cancelled
        ok = dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
        qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, fill)
    win.qatAction.trigger()
    assert win.jobs.runner.running
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5_000)
    with qtbot.waitSignal(win.jobRunner.cancelled, timeout=30_000):
        qtbot.keyClick(QApplication.focusWidget() or win, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not win.jobs.runner.running, timeout=30_000)
    assert set(s.configs) == names and s.tuned == {}
    assert "qat cancelled" in win.statusBar().currentMessage()


def _torch_w2(w):
    """Independent: torch's 2-bit symmetric per-channel fake-quant (min/max observer)."""
    import torch

    obs = torch.ao.quantization.PerChannelMinMaxObserver(
        ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-2, quant_max=1
    )
    rows = w.reshape(w.shape[0], -1)
    obs(rows)
    sc, zp = obs.calculate_qparams()
    fq = torch.fake_quantize_per_channel_affine(rows, sc, zp.to(torch.int32), 0, -2, 1)
    return fq.reshape(w.shape), sc


def _sqnr(w, fq):
    import math

    return 10 * math.log10(float((w.double() ** 2).sum()) / float(((fq - w).double() ** 2).sum()))


def test_tuned_configuration_is_viewed_exported_and_saved_with_its_weights(qtbot, window, tmp_path):
    """QAT -> the tuned configuration made current shows its own weights (histogram, SQNR
    column) -> exported with them -> saved in the session and reopened in another window
    with the same weights and the same accuracy."""
    import pytest
    import torch
    from safetensors import safe_open

    from quantviz.gui.app import create_main_window

    win = window
    s, ctl = win.session, win.controller
    win.controls.bitsSpin.lineEdit().selectAll()
    qtbot.keyClicks(win.controls.bitsSpin.lineEdit(), "2")
    qtbot.keyClick(win.controls.bitsSpin.lineEdit(), Qt.Key.Key_Return)
    qtbot.mouseClick(win.controls.applyAllButton, Qt.MouseButton.LeftButton)

    def fill() -> None:
        dlg = win.qatDialog
        dlg.epochsSpin.setValue(1)
        dlg.lrSpin.setValue(0.01)
        ok = dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
        qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, fill)
    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        win.qatAction.trigger()
    new = ctl.qat_config
    assert f"'{new}'" in win.statusBar().currentMessage()
    res = ctl.qat_result
    h = s.handle
    tuned = {f: h.layer(f).to_quant(res.weights[h.layer(f).param_name]) for f in s.fqns}

    _double_click_config(qtbot, win, new)
    lst = win.configs.list
    tips = {
        lst.item(i).data(Qt.ItemDataRole.UserRole): lst.item(i).toolTip()
        for i in range(lst.count())
    }
    assert "fine-tuned (QAT) weights" in tips[new]
    assert all("fine-tuned" not in t for n, t in tips.items() if n != new)
    fqn = s.selection[0]
    qtbot.waitUntil(
        lambda: (
            win.histogram.data is not None
            and win.histogram.data.extra.get("weights") == "fine-tuned"
        ),
        timeout=30_000,
    )
    title = win.histogram.plot.getPlotItem().titleLabel.text
    assert "fine-tuned weights" in title
    d = win.histogram.data
    fq, _ = _torch_w2(tuned[fqn])
    assert d.main.sqnr_db == pytest.approx(_sqnr(tuned[fqn], fq), abs=1e-3)
    # the inspector's SQNR column: every layer on the fine-tuned weights
    qtbot.waitUntil(lambda: "…" not in _sqnr_column(win), timeout=30_000)
    for f in s.fqns:
        fq, _ = _torch_w2(tuned[f])
        assert ctl.layer_sqnr(f) == pytest.approx(_sqnr(tuned[f], fq), abs=1e-3)
    col = _sqnr_column(win)
    assert col[0] == f"{ctl.layer_sqnr(s.fqns[0]):.1f}"

    # File > Export…: the tuned configuration's safetensors hold its weights' grids
    win.exportAction.trigger()
    dlg = win.exportDialog
    dlg.configCombo.setCurrentIndex(dlg.configCombo.findText(new))
    dlg.set_format("safetensors")
    out = tmp_path / "tuned_w2.safetensors"
    dlg.pathEdit.setText(str(out))
    with qtbot.waitSignal(dlg.exported, timeout=60_000):
        qtbot.mouseClick(dlg.exportButton, Qt.MouseButton.LeftButton)
    dlg.close()
    with safe_open(str(out), "pt") as f:
        for fqn_ in s.fqns:
            pname = h.layer(fqn_).param_name
            _, scale = _torch_w2(tuned[fqn_])
            assert torch.allclose(f.get_tensor(f"{pname}:scale"), scale.float(), rtol=1e-6)
            bias = pname.rsplit(".", 1)[0] + ".bias"
            if bias in res.weights:
                assert torch.equal(f.get_tensor(bias), res.weights[bias])

    # save the session, reopen it in another window
    path = tmp_path / "tuned.quantviz"
    assert win.sessionActions.save_session(str(path))
    win2 = create_main_window()
    win2.confirm_close = lambda: "discard"
    qtbot.addWidget(win2)
    try:
        with qtbot.waitSignals([win2.modelLoaded, win2.statsReady], timeout=60_000):
            win2.show()
        with qtbot.waitSignal(win2.sessionActions.sessionOpened, timeout=60_000):
            win2.sessionActions.open_session(str(path))
        s2 = win2.session
        assert s2.current_name == new and set(s2.tuned) == {new}
        for k, t in res.weights.items():
            assert torch.equal(s2.tuned[new][k], t), k
        qtbot.waitUntil(
            lambda: (
                win2.histogram.data is not None
                and win2.histogram.data.extra.get("weights") == "fine-tuned"
            ),
            timeout=30_000,
        )
        with qtbot.waitSignal(win2.jobDone, timeout=60_000):
            win2.jobs.evaluate(new)
        assert s2.results[-1].name == new and s2.results[-1].result.value == res.after.value
    finally:
        assert win2.shutdown(timeout=30)
        win2.close()
