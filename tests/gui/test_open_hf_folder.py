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
    assert win.table.model.rowCount() == len(expected_layers("gpt2", tied=True))
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
    assert win.table.model.rowCount() == len(expected_layers("gpt2", tied=True))
