"""Drive the app as a user would (offscreen, pytest-qt; waits on signals, never sleeps)."""

import math

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt

from quantviz.core.defaults import DEFAULT_WEIGHT
from quantviz.core.spec import QuantSpec


def click_row(qtbot, win, fqn):
    view = win.table.view
    model = win.table.model
    idx = win.table.proxy.mapFromSource(model.index(model.row_of(fqn), 0))
    rect = view.visualRect(idx)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert win.session.selection == (fqn,)


def type_bits(qtbot, win, bits):
    spin = win.controls.bitsSpin
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, str(bits))
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert spin.value() == bits


def sqnr_in_label(win):
    text = win.histogram.statsLabel.text()
    return float(text.split("SQNR ")[1].split(" dB")[0])


def test_opens_sample_with_table_and_status(window, qtmodeltester):
    win = window
    assert win.session.handle.name == "digits_cnn"
    model = win.table.model
    assert model.rowCount() == 4
    qtmodeltester.check(model)
    qtmodeltester.check(win.table.proxy)
    assert "digits_cnn" in win.modelLabel.text()
    assert "params" in win.paramsLabel.text()
    assert "float" in win.floatSizeLabel.text()
    assert "smaller" in win.currentSizeLabel.text()
    # every layer's SQNR is known after opening (small model: computed inline)
    assert all(win.controller.layer_sqnr(f) is not None for f in win.session.fqns)


def test_bits_8_to_3_then_kmeans(window, qtbot):
    win = window
    click_row(qtbot, win, "fc1")
    hv = win.histogram
    assert hv.level_count() == 256
    sq8 = sqnr_in_label(win)
    with qtbot.waitSignal(hv.updated, timeout=10_000):
        type_bits(qtbot, win, 3)
    assert hv.level_count() == 8
    sq3 = sqnr_in_label(win)
    assert sq3 < sq8 - 20
    assert win.session.config.resolve("fc1").weight.bits == 3
    # the table row follows: marked as changed, new scheme, new SQNR
    m = win.table.model
    row = m.row_of("fc1")
    assert m.data(m.index(row, 0)).startswith("•")
    assert m.data(m.index(row, 4)) == "W3 sym ch"
    assert float(m.data(m.index(row, 6))) == pytest.approx(sq3, abs=0.06)
    uniform_levels = hv.grid_item.xData[::2].copy()
    with qtbot.waitSignal(hv.updated, timeout=10_000):
        win.controls.quantizerCombo.setCurrentText("kmeans")
    assert hv.level_count() == 8
    kmeans_levels = hv.grid_item.xData[::2]
    assert set(uniform_levels.round(6)) != set(kmeans_levels.round(6))
    assert sqnr_in_label(win) > sq3  # k-means fits the bell-shaped weights better


def test_compare_grid_and_log_and_channels(window, qtbot):
    win = window
    click_row(qtbot, win, "conv2")
    hv = win.histogram
    with qtbot.waitSignal(hv.updated):
        hv.compareQuantizerCombo.setCurrentIndex(hv.compareQuantizerCombo.findData("nf4"))
    assert hv.compare_level_count() == 16
    assert hv.statsLabel.text().count("SQNR") == 2
    hv.logYCheck.setChecked(True)
    assert hv.plot.getPlotItem().ctrl.logYCheck.isChecked()
    # per-tensor: one grid, no channel to pick
    with qtbot.waitSignal(hv.updated):
        win.controls.granularityCombo.setCurrentIndex(0)
    assert not hv.channelSpin.isEnabled()
    # per-channel: the channel selector shows one channel's grid
    with qtbot.waitSignal(hv.updated):
        win.controls.granularityCombo.setCurrentIndex(1)
    assert hv.channelSpin.isEnabled() and hv.channelSpin.maximum() == 31
    with qtbot.waitSignal(hv.updated):
        hv.channelSpin.setValue(5)
    assert hv.data.channel == 5 and hv.level_count() == 256
    assert hv.range_sel.isVisible()


def test_evaluate_f5_adds_point_and_click_makes_current(window, qtbot):
    win = window
    tp = win.tradeoff
    with qtbot.waitSignal(tp.pointsChanged, timeout=60_000, check_params_cb=lambda n: n >= 1):
        qtbot.keyClick(win, Qt.Key.Key_F5)
    assert tp.point_count() == 1
    e = tp.entries[0]
    assert e.name == "default" and 0.5 < e.value <= 1.0
    assert tp.baseline.isVisible()
    assert "default" in tp._tip(0, 0, 0)
    win.configs.save_as("other")
    assert win.session.current_name == "default"  # a snapshot
    win.configs.make_current("other")
    assert win.session.current_name == "other"
    tp.click_entry(0)
    assert win.session.current_name == "default"


def test_undo_redo(window, qtbot):
    win = window
    click_row(qtbot, win, "conv1")
    type_bits(qtbot, win, 4)
    assert win.session.config.resolve("conv1").weight.bits == 4
    win.table.view.setFocus()
    qtbot.keyClick(win.table.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert win.session.config.resolve("conv1").weight.bits == 8
    assert win.controls.bitsSpin.value() == 8
    assert win.histogram.level_count() == 256
    qtbot.keyClick(
        win.table.view,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert win.session.config.resolve("conv1").weight.bits == 4
    assert win.controls.bitsSpin.value() == 4


def test_save_as_and_switch_configurations(window, qtbot):
    win = window
    click_row(qtbot, win, "fc2")
    win.configs.save_as("w4")
    win.configs.make_current("w4")
    type_bits(qtbot, win, 4)
    assert win.configs.names() == ["default", "w4"]
    win.configs.make_current("default")
    assert win.controls.bitsSpin.value() == 8
    assert win.session.config.resolve("fc2").weight.bits == 8
    win.configs.make_current("w4")
    assert win.controls.bitsSpin.value() == 4
    new = win.configs.duplicate("w4")
    win.configs.rename(new, "w4b")
    win.configs.delete("w4b")
    assert win.configs.names() == ["default", "w4"]
    with qtbot.waitSignal(win.errors.errorShown):  # deleting the last one is refused
        win.configs.delete("w4")
        win.configs._try(win.configs.delete, "default")


def test_keep_float_and_apply_all_and_reset(window, qtbot):
    win = window
    click_row(qtbot, win, "conv2")
    win.controls.floatCheck.setChecked(True)
    assert win.session.config.resolve("conv2").weight is None
    assert win.histogram.level_count() == 0
    win.controls.floatCheck.setChecked(False)
    type_bits(qtbot, win, 6)
    qtbot.mouseClick(win.controls.applyAllButton, Qt.MouseButton.LeftButton)
    assert all(win.session.config.resolve(f).weight.bits == 6 for f in win.session.fqns)
    type_bits(qtbot, win, 2)
    qtbot.mouseClick(win.controls.resetButton, Qt.MouseButton.LeftButton)
    assert win.session.config.resolve("conv2").weight.bits == 6
    assert not win.session.is_changed("conv2")


def test_activation_side_shows_grid(window, qtbot):
    win = window
    click_row(qtbot, win, "fc1")
    win.controls.activationRadio.setChecked(True)
    assert win.controls.floatCheck.isChecked()  # activations start float
    with qtbot.waitSignal(win.activations.updated):
        win.controls.floatCheck.setChecked(False)
    spec = win.session.config.resolve("fc1").activation
    assert spec is not None and spec.bits == 8
    assert win.activations.level_count() == 256
    assert win.activations.range_item.isVisible()


def test_session_to_widgets_direction(window):
    """Session changes show in the widgets without echoing back as edits."""
    win = window
    win.session.select(["fc2"])
    edits = []
    win.controls.specEdited.connect(lambda *a: edits.append(a))
    win.session.set_layer_spec(["fc2"], "weight", QuantSpec(bits=5, quantizer="log2"))
    assert win.controls.bitsSpin.value() == 5
    assert win.controls.quantizerCombo.currentText() == "log2"
    assert not win.controls.symmetricCheck.isEnabled()
    assert edits == []
    assert win.table.selected_fqns() == ("fc2",)


def test_failed_load_keeps_model_and_shows_error(window, qtbot, tmp_path):
    win = window
    before = win.session.handle
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a model")
    with qtbot.waitSignals([win.modelLoadFailed, win.errors.errorShown], timeout=30_000):
        win.open_model(str(bad))
    assert win.session.handle is before
    box = win.errors.last_box
    assert box is not None and box.isVisible()
    assert "broken.pt" in box.informativeText() or "broken.pt" in box.text()
    assert box.detailedText()  # the traceback, on demand
    assert win.table.model.rowCount() == 4


def test_invalid_group_size_is_reported_not_fatal(window, qtbot):
    win = window
    click_row(qtbot, win, "conv1")  # 16x1x3x3: rows of 9 values
    controls = win.controls
    controls.granularityCombo.setCurrentIndex(2)  # per group: a size that fits is picked
    assert controls.groupSizeSpin.value() == 9
    assert win.session.config.resolve("conv1").weight.group_size == 9
    assert "group sizes that fit: 1, 3, 9" in controls.groupHint.text()
    assert "Cannot quantize" not in win.histogram.statsLabel.text()
    controls.groupSizeSpin.setValue(128)  # typed anyway: reported, not fatal
    assert "128 does not divide 9" in controls.groupHint.text()
    assert "Cannot quantize" in win.histogram.statsLabel.text()
    assert win.histogram.level_count() == 0
    assert math.isnan(win.controller.layer_sqnr("conv1"))


def test_close_while_sweep_runs_stops_cleanly(window, qtbot):
    win = window
    with qtbot.waitSignal(win.jobRunner.progress, timeout=30_000):
        win.uniform_sweep()
    assert win.jobRunner.running
    win.close()
    assert not win.jobRunner.running
    t = win.jobRunner._thread
    assert t is None or not t.is_alive()


def test_multi_select_edits_every_selected_layer(window, qtbot):
    win = window
    click_row(qtbot, win, "conv1")
    view, model, proxy = win.table.view, win.table.model, win.table.proxy
    idx = proxy.mapFromSource(model.index(model.row_of("fc2"), 0))
    qtbot.mouseClick(
        view.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.ControlModifier,
        view.visualRect(idx).center(),
    )
    assert set(win.session.selection) == {"conv1", "fc2"}
    type_bits(qtbot, win, 5)
    bits = {f: win.session.config.resolve(f).weight.bits for f in win.session.fqns}
    assert bits == {"conv1": 5, "conv2": 8, "fc1": 8, "fc2": 5}
    # filtering by name hides rows but keeps the model intact
    win.table.filter.setText("fc")
    assert proxy.rowCount() == 2 and model.rowCount() == 4
    # sorting by SQNR puts the 5-bit layers first
    win.table.filter.setText("")
    view.sortByColumn(6, Qt.SortOrder.AscendingOrder)
    first = {proxy.data(proxy.index(r, 0), Qt.ItemDataRole.UserRole + 2) for r in (0, 1)}
    assert first == {"conv1", "fc2"}


def test_sensitivity_then_mixed_precision(window, qtbot):
    win = window
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        win.run_sensitivity()
    sens = win.session.sensitivity
    assert set(sens) == set(win.session.fqns)
    m = win.table.model
    assert m.data(m.index(0, 8)) != ""
    win.budgetSpin.setValue(0.0)  # auto: a sweep of budgets
    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        win.mixed_precision()
    series = {e.series for e in win.session.results}
    assert series == {"mixed precision"}
    assert len(win.tradeoff.curves["mixed precision"].xData) >= 2


def test_click_on_plotted_point_makes_its_config_current(window, qtbot):
    win = window
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        win.uniform_sweep()
    qtbot.waitUntil(lambda: win.tradeoff.point_count() == 6)
    tp = win.tradeoff
    e = next(e for e in tp.entries if "W4" in e.name)
    vb = tp.plot.getPlotItem().vb
    scene_pos = vb.mapViewToScene(pg_point(e.model_bytes / tp.div, e.value))
    pos = tp.plot.mapFromScene(scene_pos)
    with qtbot.waitSignal(tp.entryClicked, timeout=5_000):
        qtbot.mouseClick(tp.plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert win.session.current_name == e.name
    assert win.session.config.default.weight.bits == 4
    assert e.name in win.configs.names()


def pg_point(x, y):
    from PySide6.QtCore import QPointF

    return QPointF(x, y)


def test_views_use_float_weights_while_an_evaluation_swaps_them(window, qtbot):
    import torch

    from quantviz.core import quantize
    from quantviz.core.spec import LayerConfig, ModelConfig
    from quantviz.eval import apply_config

    win = window
    s = win.session
    w0 = s.weight("fc1").clone()
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=2)))
    with apply_config(s.handle, cfg):  # what a running evaluation does to the module
        assert not torch.equal(s.handle.weight("fc1").detach(), w0)
        assert torch.equal(s.weight("fc1"), w0)
        click_row(qtbot, win, "fc1")
        type_bits(qtbot, win, 4)
        expected = quantize(w0, DEFAULT_WEIGHT.with_(bits=4)).sqnr_db
        assert sqnr_in_label(win) == pytest.approx(expected, abs=0.06)


def test_dark_palette_switch_recolours_plots(window, qtbot):
    from quantviz.gui.plot_style import DARK, LIGHT

    win = window
    click_row(qtbot, win, "fc1")
    win.darkAction.trigger()
    assert win.darkAction.isChecked()
    bg = win.histogram.plot.backgroundBrush().color().name()
    assert bg == DARK.background
    assert win.tradeoff.plot.backgroundBrush().color().name() == DARK.background
    assert win.histogram.level_count() == 256  # still drawn after the switch
    win.set_dark(False)
    assert not win.darkAction.isChecked()
    assert win.histogram.plot.backgroundBrush().color().name() == LIGHT.background
