"""File > Open model folder…: a Hugging Face checkpoint opens; a bad folder is reported and
the open model stays."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")
pytest.importorskip("transformers")

from hf_models import expected_layers, save
from PySide6.QtWidgets import QFileDialog


@pytest.mark.slow
def test_open_model_folder_from_the_file_menu(window, qtbot, tmp_path, monkeypatch):
    win = window
    assert win.openFolderAction in win.menuBar().actions()[0].menu().actions()
    folder = save("gpt2", tmp_path / "tiny-gpt2")
    picked = [str(folder)]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: picked[0])
    with qtbot.waitSignal(win.modelLoaded, timeout=120_000):
        win.openFolderAction.trigger()
    h = win.session.handle
    assert h.source == str(folder) and h.is_causal_lm
    assert sorted(win.table.visible_fqns()) == sorted(expected_layers("gpt2", tied=True))
    assert "tiny-gpt2" in win.windowTitle()
    # picking a checkpoint's config.json in the file dialog opens its folder too
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda *a, **k: (str(folder / "config.json"), "")
    )
    with qtbot.waitSignal(win.modelLoaded, timeout=120_000):
        win.openModelAction.trigger()
    assert win.session.handle.source == str(folder)
    # a folder without config.json: one message naming it; the model stays open
    empty = tmp_path / "not-a-checkpoint"
    empty.mkdir()
    picked[0] = str(empty)
    with qtbot.waitSignal(win.errors.errorShown, timeout=60_000) as blocker:
        win.openFolderAction.trigger()
    assert "not-a-checkpoint" in blocker.args[1] and "config.json" in blocker.args[1]
    assert win.session.handle.source == str(folder)
    assert sorted(win.table.visible_fqns()) == sorted(expected_layers("gpt2", tied=True))


@pytest.mark.slow
def test_quantviz_dir_with_token_data(qtbot, tmp_path):
    """``quantviz DIR --data tokens.npz``: the folder opens with its data, calibration
    statistics are collected and an evaluation runs, all from the window."""
    import numpy as np

    from quantviz.gui.app import create_main_window

    folder = save("llama", tmp_path / "tiny-llama")
    data = tmp_path / "tokens.npz"
    np.savez(data, x=np.random.default_rng(0).integers(0, 128, (6, 12)))
    win = create_main_window(str(folder), str(data))
    win.confirm_close = lambda: "discard"
    qtbot.addWidget(win)
    with qtbot.waitSignals([win.modelLoaded, win.statsReady], timeout=120_000):
        win.show()
    h = win.session.handle
    assert h.example_input.shape == (1, 12) and win.session.data.x.shape == (6, 12)
    assert sorted(win.table.visible_fqns()) == sorted(expected_layers("llama", tied=False))
    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        win.evaluateAction.trigger()
    res = win.session.results[-1].result
    assert res.metric == "top1_agreement" and res.n_samples == 6
    assert win.shutdown(timeout=30)
