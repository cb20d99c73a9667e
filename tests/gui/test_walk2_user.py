"""Bugs found by using the merged app as a user (walkthrough 2), each driven like a user."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import numpy as np
import torch
from PySide6.QtCore import Qt
from test_main_window import click_row
from test_transforms_gui import tick


def torch_w8_channel_sqnr(w: torch.Tensor) -> float:
    """Plain torch: the default W8 symmetric per-channel minmax scheme's SQNR (dB) of ``w``."""
    obs = torch.ao.quantization.PerChannelMinMaxObserver(
        ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric
    )
    obs(w)
    scale, zp = obs.calculate_qparams()
    q = torch.fake_quantize_per_channel_affine(w, scale.float(), zp.int(), 0, -128, 127)
    return 10 * math.log10(float((w.double() ** 2).sum() / ((w - q).double() ** 2).sum()))


def table_sqnr(win, fqn: str) -> float:
    model = win.table.model
    return float(model.data(model.index(model.row_of(fqn), 6)))


def test_table_sqnr_stays_on_the_loaded_weights_after_evaluating_with_transforms(window, qtbot):
    """Evaluating a configuration with cle put the SQNR of the *transformed* weights into
    the table's column (keyed as the loaded weights'): after F5 some rows showed the
    after-transform number and others, once clicked, the plain one."""
    win = window
    weights = {
        f: win.session.handle.module.get_submodule(f).weight.detach().clone()
        for f in win.session.fqns
    }
    expected = {f: torch_w8_channel_sqnr(w) for f, w in weights.items()}
    for f in win.session.fqns:
        assert table_sqnr(win, f) == pytest.approx(expected[f], abs=0.06)
    tick(qtbot, win.transformsPanel.checks["cle"])
    assert win.session.config.transform_names == ("cle",)
    with qtbot.waitSignal(win.tradeoff.pointsChanged, timeout=60_000):
        qtbot.keyClick(win, Qt.Key.Key_F5)
    r = win.tradeoff.entries[-1].result
    after = {lay["fqn"]: lay.get("weight_sqnr_db") for lay in r.layers}
    # cle changed the conv weights: the evaluated (transformed) SQNR differs from the plain one
    assert any(abs(after[f] - expected[f]) > 0.2 for f in after if after[f] is not None)
    win.table.model.flush_metrics()
    for f in win.session.fqns:  # what the user sees right after F5
        assert table_sqnr(win, f) == pytest.approx(expected[f], abs=0.06), f
    for f in win.session.fqns:  # and after clicking through the rows
        click_row(qtbot, win, f)
    for f in win.session.fqns:
        assert table_sqnr(win, f) == pytest.approx(expected[f], abs=0.06), f


def test_a_sweep_with_bias_correction_keeps_the_current_after_view(window, qtbot):
    """A sweep of bias_correction at several bit widths filled the store of transformed
    states (keyed by the weight specs) and evicted the current configuration's: after the
    sweep the histogram's "after transforms" overlay was gone until Compute again."""
    win = window
    hv = win.histogram
    tp = win.transformsPanel
    tick(qtbot, tp.checks["cle"])
    tick(qtbot, tp.checks["bias_correction"])
    click_row(qtbot, win, "conv2")
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        qtbot.mouseClick(tp.computeButton, Qt.MouseButton.LeftButton)
    before = hv.after_data()
    assert before is not None and before.extra["label"] == "after transforms"
    win.sweepBitsEdit.setText("2,3,4,5")
    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        win.sweepBothAction.trigger()
    qtbot.waitUntil(lambda: win.tradeoff.point_count() >= 8, timeout=30_000)
    click_row(qtbot, win, "conv1")
    click_row(qtbot, win, "conv2")
    after = hv.after_data()
    assert after is not None, "the after-transforms overlay vanished after the sweep"
    assert np.array_equal(after.counts, before.counts)
    assert hv.legend.getLabel(hv.after_item).text == "after transforms"


def test_quantviz_with_a_session_file_opens_the_session(window, qtbot, tmp_path):
    """``quantviz mine.quantviz`` (a session saved with Ctrl+S) tried to open the session
    file as a model: "not a model file quantviz can read"."""
    from test_main_window import type_bits

    from quantviz.gui.app import create_main_window

    win = window
    click_row(qtbot, win, "fc1")
    type_bits(qtbot, win, 5)
    g = torch.Generator().manual_seed(0)
    tuned = {  # fine-tuned weights, as Run > Fine-tune (QAT) leaves them
        k: p.detach() + 0.01 * torch.randn(p.shape, generator=g)
        for k, p in win.session.handle.module.named_parameters()
    }
    win.session.set_tuned(win.session.current_name, tuned)
    path = tmp_path / "mine.quantviz"
    assert win.sessionActions.save_session(str(path))
    win2 = create_main_window(str(path))  # what `quantviz mine.quantviz` runs
    win2.confirm_close = lambda: "discard"
    qtbot.addWidget(win2)
    errors: list[str] = []
    win2.sessionActions.sessionFailed.connect(errors.append)
    try:
        with qtbot.waitSignal(win2.sessionActions.sessionOpened, timeout=60_000):
            win2.show()
        assert not errors
        s2 = win2.session
        assert s2.handle.name == "digits_cnn"
        assert s2.config.resolve("fc1").weight.bits == 5
        assert set(s2.tuned) == {s2.current_name}
        for k, t in tuned.items():
            assert torch.equal(s2.tuned[s2.current_name][k], t), k
        model = win2.table.model
        qtbot.waitUntil(lambda: model.rowCount() == 4, timeout=30_000)
        scheme = model.data(model.index(model.row_of("fc1"), 4))
        assert scheme.startswith("W5"), scheme
    finally:
        assert win2.shutdown(timeout=30)
        win2.close()


def test_the_input_activation_plot_keeps_a_readable_height_on_a_1366x768_screen(window, qtbot):
    """At 1297 x 729 (the window on a 1366 x 768 screen) the notes under the activation
    plot took all of its splitter pane: the histogram was a line with no height."""
    from test_small_screen_and_panels import _small

    win = window
    _small(qtbot, win)
    click_row(qtbot, win, "conv2")
    tick(qtbot, win.transformsPanel.checks["cle"])  # the before / after notes take lines
    av = win.activations
    qtbot.waitExposed(av.plot)
    qtbot.waitUntil(lambda: av.plot.isVisible())
    assert av.plot.height() >= 110, av.plot.height()
    assert av.plot.getPlotItem().vb.height() >= 40  # the data area, not just the axes
    # the window still fits the screen; the layer controls scroll instead
    assert win.height() <= 768 and win.minimumSizeHint().height() <= 729
    assert win.histogram.rangePlot.height() >= 60


def test_the_budget_slider_dock_fits_a_1366x768_screen(window, qtbot):
    """View > Panels > Budget slider at 1297 x 729: the dock opened on the right and the
    window grew past the screen's right edge (its status bar and the dock cut off)."""
    from test_small_screen_and_panels import SMALL, _small

    win = window
    _small(qtbot, win)
    win.panelsMenu.menuAction()  # View > Panels
    toggle = next(a for a in win.panelsMenu.actions() if a.text() == "Budget slider")
    toggle.trigger()
    dock = win.budgetDock
    qtbot.waitUntil(dock.isVisible)
    qtbot.waitExposed(dock.widget())
    assert win.width() <= 1366 and win.minimumSizeHint().width() <= SMALL[0]
    assert win.size().toTuple() == SMALL
    # the dock is readable and the central views keep their place
    qtbot.waitUntil(lambda: dock.height() >= 0.2 * win.height(), timeout=5_000)
    assert dock.width() >= 0.9 * win.width()
    assert dock.widget().computeButton.isVisible()
    assert win.centralWidget().height() >= 250
    toggle.trigger()
    qtbot.waitUntil(lambda: not dock.isVisible())


def test_an_embeddings_token_ids_are_not_shown_as_quantized(window, qtbot, tmp_path):
    """W8A8 on every layer of a language model: the activation panel of embed_tokens showed
    "A8 sym t: calibrated range [-4.1e+03, 4.07e+03], 256 levels" over the token ids, a
    quantization evaluation never applies (integer inputs pass through)."""
    from test_before_after_gui import _llama_files
    from test_before_after_gui import click_row as scroll_and_click

    pytest.importorskip("transformers")
    win = window
    src, data = _llama_files(tmp_path)
    with qtbot.waitSignals([win.modelLoaded, win.statsReady], timeout=120_000):
        win.open_model(src, data)
    av, c = win.activations, win.controls
    click_row(qtbot, win, "model.embed_tokens")
    qtbot.mouseClick(c.activationRadio, Qt.MouseButton.LeftButton)
    tick(qtbot, c.floatCheck)
    qtbot.mouseClick(c.applyAllButton, Qt.MouseButton.LeftButton)
    assert win.session.config.resolve("model.embed_tokens").activation.bits == 8
    text = av.info.text()
    assert "integer ids" in text and "never quantized" in text, text
    assert "calibrated range" not in text and av.level_count() == 0
    assert not av.range_item.isVisible()
    # a float input still shows its grid
    qtbot.mouseClick(win.table.expandButton, Qt.MouseButton.LeftButton)
    scroll_and_click(qtbot, win, "model.layers.0.mlp.down_proj")
    assert av.level_count() == 256 and "calibrated range" in av.info.text()
