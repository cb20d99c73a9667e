"""Ctrl+S while an evaluation (F5) runs: the status bar's main progress bar and its Cancel
belong to the evaluation (it used to show both jobs' numbers in turn, jumping back and forth,
and Cancel stopped both); the save shows its own small indicator with its own Stop button.

The two workers are made to overlap on any machine: the evaluation waits at its 3rd forward
pass until the save is under way, the save waits at its 3rd chunk until the evaluation ran
three more forward passes; so the user sees both move at once, in that order."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog
from test_save_in_background import _ctrl_s, _tune

from quantviz.data.datasets import load_digits
from quantviz.io import session_file
from quantviz.io.session_file import load_session


class Overlap:
    """Gates that make the evaluation's and the save's workers interleave."""

    def __init__(self, win, monkeypatch) -> None:
        self.win = win
        self.eval_mid = threading.Event()  # the evaluation is under way
        self.save_mid = threading.Event()  # the save is under way
        self.eval_more = threading.Event()  # the evaluation moved on while the save ran
        self.forwards = 0
        #: hold the evaluation (the save) until the user cancelled it, from then on
        self.hold_eval = self.hold_save = False
        win.session.handle.module.register_forward_pre_hook(self._forward)
        chunks = session_file._TunedFile.chunks
        gate = self

        def gated(self):
            for i, c in enumerate(chunks(self)):
                if i == 2 and not gate.save_mid.is_set():
                    gate.save_mid.set()
                    gate.eval_more.wait(30)
                if i == 4 and gate.hold_save:
                    assert gate.win.sessionActions.saveRunner._cancel.wait(30)
                yield c

        monkeypatch.setattr(session_file._TunedFile, "chunks", gated)

    def _forward(self, *_) -> None:
        if threading.current_thread() is not self.win.jobRunner._thread:
            return  # calibration, histograms: not the evaluation
        self.forwards += 1
        if self.forwards == 3:
            self.eval_mid.set()
            self.save_mid.wait(30)
        elif self.forwards == 6:
            self.eval_more.set()
            if self.hold_eval:
                assert self.win.jobRunner._cancel.wait(30)

    def release(self) -> None:
        for ev in (self.eval_mid, self.save_mid, self.eval_more):
            ev.set()


@pytest.fixture
def busy(window, qtbot, tmp_path, monkeypatch):
    """The window on 4096 digits (16 evaluation batches), with a fine-tuned configuration
    (so a save writes a weights file in many chunks), Save as answered with tmp_path."""
    win = window
    d = load_digits()
    idx = np.resize(d["test_idx"], 4096)
    data = tmp_path / "digits4096.npz"
    np.savez(data, x=d["x"][idx], y=d["y"][idx])
    with qtbot.waitSignals([win.dataLoaded, win.statsReady], timeout=60_000):
        win.open_data(str(data))
    s = win.session
    tuned = s.duplicate(s.current_name, "tuned")
    w = _tune(win, 0)  # the current configuration's ...
    s.set_tuned(tuned, w)  # ... and a copy's
    monkeypatch.setattr(session_file, "CHUNK_BYTES", 1024)
    path = tmp_path / "mine.quantviz"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    gates = Overlap(win, monkeypatch)
    yield win, path, w, gates
    gates.release()


def _f5(qtbot, win) -> None:
    win.activateWindow()
    qtbot.keyClick(win, Qt.Key.Key_F5)


class Watch:
    """What the user sees: the main bar after every change and progress event, and the
    save indicator after every save progress event."""

    def __init__(self, win) -> None:
        self.win = win
        self.main: list[tuple[int, str]] = []
        self.save: list[tuple[bool, int, str]] = []
        self.order: list[str] = []
        bar, sbar = win.progressBar, win.status.saveBar
        self._slots = [
            (bar.valueChanged, lambda *_: self._main()),
            (win.jobRunner.progress, lambda *_: (self.order.append("eval"), self._main())),
            (
                win.sessionActions.saveRunner.progress,
                lambda *_: (
                    self.order.append("save"),
                    self._main(),
                    self.save.append((sbar.isVisible(), sbar.value(), sbar.text())),
                ),
            ),
        ]
        for sig, slot in self._slots:
            sig.connect(slot)
        self._main()  # as it is now: the evaluation's progress so far

    def _main(self) -> None:
        bar = self.win.progressBar
        self.main.append((bar.value(), bar.format()))

    def stop(self) -> None:
        for sig, slot in self._slots:
            sig.disconnect(slot)


def _monotone(values) -> bool:
    return all(b >= a for a, b in itertools.pairwise(values))


def test_ctrl_s_during_f5_each_has_its_own_monotone_indicator(busy, qtbot):
    win, path, w, gates = busy
    sa = win.sessionActions
    before = len(win.session.results)
    _f5(qtbot, win)
    qtbot.waitUntil(gates.eval_mid.is_set, timeout=60_000)
    watch = Watch(win)
    done: list[str] = []
    win.jobDone.connect(lambda kind: (done.append(kind), watch.stop()))  # before the reset
    saved: list[str] = []
    sa.sessionSaved.connect(saved.append)
    with qtbot.waitSignals([sa.sessionSaved, win.jobDone], timeout=120_000):
        _ctrl_s(qtbot, win)
        # both run: the main bar and Cancel say the evaluation, the save has its own
        assert sa.saving and win.jobRunner.running
        assert win.cancelButton.isEnabled()
        assert win.cancelButton.toolTip() == "Stop evaluating default at its next step (Esc)"
        assert win.cancelAction.toolTip() == win.cancelButton.toolTip()
        assert "Evaluating default" in win.progressBar.format()
        qtbot.waitUntil(win.status.saveIndicator.isVisible)
        assert win.status.saveCancelButton.isEnabled()
        # the extra indicator does not widen the window past a 1366-px screen's (1297 px)
        assert win.statusBar().minimumSizeHint().width() <= 1297
    assert saved == [str(path)]
    assert done == ["evaluate"]
    # they really overlapped: the evaluation moved on between two steps of the save
    runs = [k for k, _ in itertools.groupby(watch.order)]
    i = runs.index("save")
    assert runs[i : i + 3] == ["save", "eval", "save"], runs
    # the main bar: the evaluation's numbers only, never going back, up to 100%
    values = [v for v, _ in watch.main]
    assert _monotone(values), values
    assert values[-1] == 1000
    assert all("Evaluating default" in f and "Saving" not in f for _, f in watch.main)
    # the save indicator: shown while it saved, its own monotone numbers, then gone
    assert len(watch.save) > 3
    assert all(shown and "Saving mine.quantviz" in t for shown, _, t in watch.save)
    assert _monotone([v for _, v, _ in watch.save])
    qtbot.waitUntil(lambda: not win.status.saveIndicator.isVisible())
    assert win.progressBar.format() == "idle" and not win.cancelButton.isEnabled()
    # the evaluation's result is there, the saved file loads back with the tuned weights
    assert len(win.session.results) == before + 1
    assert win.session.results[-1].name == "default"
    back = load_session(path)
    assert set(back.configs) == {"default", "tuned"}
    for k, t in w.items():
        assert torch.equal(back.tuned["tuned"][k], t), k


@pytest.mark.parametrize("how", ["button", "esc"])
def test_cancel_stops_the_evaluation_and_the_save_goes_on(busy, qtbot, how):
    win, path, w, gates = busy
    sa = win.sessionActions
    before = len(win.session.results)
    gates.hold_eval = True  # still running when the user cancels it
    _f5(qtbot, win)
    qtbot.waitUntil(gates.eval_mid.is_set, timeout=60_000)
    cancelled: list[int] = []
    win.jobRunner.cancelled.connect(lambda: cancelled.append(1))
    with qtbot.waitSignal(sa.sessionSaved, timeout=120_000):
        _ctrl_s(qtbot, win)
        qtbot.waitUntil(win.status.saveIndicator.isVisible)
        if how == "button":
            qtbot.mouseClick(win.cancelButton, Qt.MouseButton.LeftButton)
        else:
            win.activateWindow()
            qtbot.keyClick(win, Qt.Key.Key_Escape)
        assert cancelled == [1]
        assert win.progressBar.format() == "idle" and not win.cancelButton.isEnabled()
        assert sa.saving and win.status.saveIndicator.isVisible()  # the save goes on
    assert f"Saved session {path}" in win.statusBar().currentMessage()
    assert len(win.session.results) == before  # nothing from the cancelled evaluation
    back = load_session(path)
    for k, t in w.items():
        assert torch.equal(back.tuned["tuned"][k], t), k
    assert not win.status.saveIndicator.isVisible()


def test_the_save_s_stop_button_stops_only_the_save(busy, qtbot, tmp_path):
    win, path, _, gates = busy
    sa = win.sessionActions
    before = len(win.session.results)
    gates.hold_save = True  # still running when the user stops it
    _f5(qtbot, win)
    qtbot.waitUntil(gates.eval_mid.is_set, timeout=60_000)
    values: list[int] = []
    win.progressBar.valueChanged.connect(values.append)
    with qtbot.waitSignal(sa.sessionFailed, timeout=120_000) as failed:
        _ctrl_s(qtbot, win)
        qtbot.waitUntil(win.status.saveIndicator.isVisible)
        stop = win.status.saveCancelButton
        assert "Stop saving mine.quantviz" in stop.toolTip()
        qtbot.mouseClick(stop, Qt.MouseButton.LeftButton)
    assert "save cancelled" in failed.args[0]
    assert not win.status.saveIndicator.isVisible()
    assert win.jobRunner.running and win.cancelButton.isEnabled()  # F5 goes on
    gates.release()
    with qtbot.waitSignal(win.jobDone, timeout=120_000) as done:
        pass
    assert done.args == ["evaluate"]
    assert len(win.session.results) == before + 1
    assert _monotone(values[: values.index(1000) + 1]), values
    assert not path.exists() and list(tmp_path.glob("*.safetensors")) == []
