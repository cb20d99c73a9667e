"""Save session (Ctrl+S / Save as…) runs in the background: as a user, on the bundled
sample with fine-tuned weights (issue 13 follow-up)."""

from __future__ import annotations

import os

import pytest
import torch
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QFileDialog
from test_main_window import click_row, type_bits

from quantviz.io import session_file
from quantviz.io.session_file import load_session


def _tune(win, seed: int) -> dict:
    """The current configuration gets fine-tuned weights (the loaded ones plus noise)."""
    g = torch.Generator().manual_seed(seed)
    w = {
        k: p.detach() + 0.01 * torch.randn(p.shape, generator=g)
        for k, p in win.session.handle.module.named_parameters()
    }
    win.session.set_tuned(win.session.current_name, w)
    return w


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _ctrl_s(qtbot, win) -> None:
    win.activateWindow()
    seq = win.saveSessionNowAction.shortcut()
    assert seq == QKeySequence(QKeySequence.StandardKey.Save)
    qtbot.keyClick(win, seq[0].key(), seq[0].keyboardModifiers())


def test_ctrl_s_saves_in_the_background(window, qtbot, tmp_path, monkeypatch):
    win = window
    monkeypatch.setattr(session_file, "CHUNK_BYTES", 4096)  # many progress steps
    sa = win.sessionActions
    click_row(qtbot, win, "fc1")
    type_bits(qtbot, win, 5)
    w = _tune(win, 0)
    path = tmp_path / "mine.quantviz"
    asked = []
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", lambda *a, **k: asked.append(1) or (str(path), "")
    )
    seen: list[float] = []
    sa.saveRunner.progress.connect(lambda f, m: seen.append(f))
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(0)
    with qtbot.waitSignal(sa.sessionSaved, timeout=60_000) as saved:
        _ctrl_s(qtbot, win)  # no file yet: asks for one
        assert sa.saving  # started, not done on the GUI thread
        assert win.status.saveIndicator.isVisible()  # its own indicator, not the job bar
        assert "Saving mine.quantviz" in win.status.saveBar.text()
        assert not win.progressBar.isEnabled() and not win.cancelButton.isEnabled()
    timer.stop()
    assert saved.args == [str(path)] and asked == [1]
    assert len(seen) > 3 and seen == sorted(seen)  # monotone progress
    assert ticks  # the event loop ran while it saved
    assert f"Saved session {path}" in win.statusBar().currentMessage()
    assert not win.session.modified and win.windowTitle()
    back = load_session(path)
    assert back.configs[back.current].resolve("fc1").weight.bits == 5
    for k, t in w.items():
        assert torch.equal(back.tuned[back.current][k], t), k
    # Ctrl+S again writes to the same file without asking
    type_bits(qtbot, win, 6)
    with qtbot.waitSignal(sa.sessionSaved, timeout=60_000):
        _ctrl_s(qtbot, win)
    assert asked == [1]
    assert load_session(path).configs[back.current].resolve("fc1").weight.bits == 6


@pytest.mark.parametrize("how", ["stop", "esc"])
def test_cancel_keeps_the_previous_files(window, qtbot, tmp_path, monkeypatch, how):
    """The save indicator's Stop, or Esc while no other job runs, cancels the save."""
    win = window
    sa = win.sessionActions
    _tune(win, 0)
    path = tmp_path / "s.quantviz"
    assert sa.save_session(str(path))  # the previous save
    before = _files(tmp_path)
    monkeypatch.setattr(session_file, "CHUNK_BYTES", 1024)
    # the writer waits (at its 3rd chunk of the weights file) until the user has clicked
    # Cancel (the runner's cancel flag is set): the click lands mid-write on any machine
    calls = []
    chunks = session_file._TunedFile.chunks

    def gated(self):
        calls.append(1)
        for i, c in enumerate(chunks(self)):
            if len(calls) == 2 and i == 3:
                assert sa.saveRunner._cancel.wait(30)
            yield c

    monkeypatch.setattr(session_file._TunedFile, "chunks", gated)
    _tune(win, 1)
    click_row(qtbot, win, "fc1")
    type_bits(qtbot, win, 3)
    clicked = []

    def cancel(_fraction: float, msg: str) -> None:
        if "write weights" in msg and not clicked:  # writing the new weights file
            clicked.append(msg)
            if how == "stop":
                qtbot.mouseClick(win.status.saveCancelButton, Qt.MouseButton.LeftButton)
                return
            assert not win.cancelButton.isEnabled()  # the main bar's: no job runs
            assert win.cancelAction.toolTip() == "Stop saving s.quantviz (Esc)"
            win.activateWindow()
            qtbot.keyClick(win, Qt.Key.Key_Escape)

    sa.saveRunner.progress.connect(cancel)
    with qtbot.waitSignal(sa.sessionFailed, timeout=60_000) as failed:
        _ctrl_s(qtbot, win)
    assert clicked and "save cancelled" in failed.args[0]
    assert "is as it was before" in win.statusBar().currentMessage()
    assert sa.saveRunner.wait(30)
    assert _files(tmp_path) == before  # no new weights, no temporary file
    assert win.session.modified  # the edits are still unsaved ...
    assert win.session.config.resolve("fc1").weight.bits == 3  # ... and still there


def test_close_dialog_waits_for_the_save(window, qtbot, tmp_path, monkeypatch):
    win = window
    sa = win.sessionActions
    monkeypatch.setattr(session_file, "CHUNK_BYTES", 1024)
    w = _tune(win, 0)
    path = tmp_path / "s.quantviz"
    assert sa.save_session(str(path))
    click_row(qtbot, win, "fc1")
    type_bits(qtbot, win, 7)
    asked = []
    win.confirm_close = lambda: asked.append(1) or "save"
    assert not win.close()  # not yet: the save runs first
    assert win.isVisible() and sa.saving and asked == [1]
    assert not win.close()  # closing again meanwhile asks nothing, waits for the save too
    assert asked == [1]
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=60_000)
    assert asked == [1]
    back = load_session(path)
    assert back.configs[back.current].resolve("fc1").weight.bits == 7
    assert torch.equal(back.tuned[back.current]["fc1.weight"], w["fc1.weight"])


def test_a_failed_save_keeps_the_window_open(window, qtbot, tmp_path):
    win = window
    sa = win.sessionActions
    _tune(win, 0)
    gone = tmp_path / "gone"
    gone.mkdir()
    assert sa.save_session(str(gone / "s.quantviz"))
    for p in gone.iterdir():
        p.unlink()
    gone.rmdir()  # the folder of the session's file disappeared
    click_row(qtbot, win, "fc1")
    type_bits(qtbot, win, 4)
    win.confirm_close = lambda: "save"
    with qtbot.waitSignal(win.errors.errorShown, timeout=60_000) as shown:
        assert not win.close()
    title, message = shown.args
    assert title == "Could not save the session"
    assert "gone" in message and "does not exist" in message
    qtbot.wait(50)
    assert win.isVisible() and win.session.modified
    assert win.session.config.resolve("fc1").weight.bits == 4
    assert not os.path.exists(gone)
    win.confirm_close = lambda: "discard"


def test_opening_a_model_with_save_opens_it_after_the_save(window, qtbot, tmp_path):
    win = window
    sa = win.sessionActions
    path = tmp_path / "s.quantviz"
    assert sa.save_session(str(path))
    click_row(qtbot, win, "fc1")
    type_bits(qtbot, win, 5)
    win.confirm_close = lambda: "save"
    with qtbot.waitSignal(win.modelLoaded, timeout=60_000):
        win.open_model("sample:digits_mobilenet")
        assert win.session.handle.name == "digits_cnn"  # still open while it saves
    assert load_session(path).configs["default"].resolve("fc1").weight.bits == 5
    assert win.session.handle.name == "digits_mobilenet"
    assert sa.path is None  # another model: Ctrl+S asks for a file again
