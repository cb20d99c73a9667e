"""The transforms panel, the rounding combo and the histogram's "after transforms" overlay,
driven as a user would (clicks), on the bundled digits_cnn sample."""

from __future__ import annotations

import torch
from PySide6.QtCore import QPoint, Qt
from test_main_window import click_row


def tick(qtbot, box):
    """Click a checkbox on its indicator, as a user does."""
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))


def test_ticking_cle_is_undoable_and_the_histogram_shows_before_and_after(window, qtbot):
    win = window
    snap = {k: v.clone() for k, v in win.session.handle.module.state_dict().items()}
    click_row(qtbot, win, "conv1")
    hv = win.histogram
    assert hv.after_data() is None and hv.after_level_count() == 0
    cle = win.transformsPanel.checks["cle"]
    tick(qtbot, cle)
    assert win.session.config.transform_names == ("cle",)
    # cle needs no data: the overlay is there at once, with the grid of the new weights
    after = hv.after_data()
    assert after is not None and after.extra["label"] == "after transforms"
    assert hv.level_count() == 256 and hv.after_level_count() == 256
    assert hv.legend.getLabel(hv.after_item).text == "after transforms"
    assert not torch.equal(torch.from_numpy(after.edges), torch.from_numpy(hv.data.edges))
    assert "cle: equalized with conv2" in win.transformsPanel.notesLabel.text()
    # undo / redo through the window's stack
    win.undoStack.undo()
    assert win.session.config.transforms == () and not cle.isChecked()
    assert hv.after_data() is None
    win.undoStack.redo()
    assert cle.isChecked() and hv.after_data() is not None
    # the float model is untouched throughout
    assert all(torch.equal(v, snap[k]) for k, v in win.session.handle.module.state_dict().items())


def test_smoothquant_alpha_and_compute_then_evaluate(window, qtbot):
    win = window
    tp = win.transformsPanel
    tick(qtbot, tp.checks["smoothquant"])
    assert tp.alphaSpin.isEnabled()
    tp.alphaSpin.setValue(0.8)
    assert win.session.config.transforms == (("smoothquant", (("alpha", 0.8),)),)
    click_row(qtbot, win, "fc1")
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        qtbot.mouseClick(tp.computeButton, Qt.MouseButton.LeftButton)
    assert "smoothquant(alpha=0.8)" in tp.notesLabel.text()
    assert win.histogram.after_data() is not None
    with qtbot.waitSignal(win.tradeoff.pointsChanged, timeout=60_000):
        qtbot.keyClick(win, Qt.Key.Key_F5)
    r = win.tradeoff.entries[-1].result
    assert any("smoothquant" in n for lay in r.layers for n in lay.get("notes", []))


def test_rounding_combo_sets_gptq_on_the_selected_layer(window, qtbot):
    win = window
    click_row(qtbot, win, "fc1")
    combo = win.controls.roundingCombo
    assert combo.isEnabled() and combo.currentText() == "nearest"
    combo.setCurrentText("gptq")
    assert win.session.config.resolve("fc1").weight.rounding == "gptq"
    assert win.session.config.resolve("conv1").weight.rounding == "nearest"
    win.undoStack.undo()
    assert win.session.config.resolve("fc1").weight.rounding == "nearest"
    assert combo.currentText() == "nearest"
