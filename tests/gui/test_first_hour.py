"""What a new user ran into in the first hour (issue: the rough edges of the app), driven as
a user would: shortcuts, menus, dialogs answered by the test, and what the window shows."""

from __future__ import annotations

import itertools
import warnings

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import torch
from PySide6.QtCore import QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication
from test_main_window import click_row, type_bits


def test_redo_with_ctrl_shift_z_and_ctrl_y(window, qtbot):
    win = window
    seqs = [k.toString() for k in win.redoAction.shortcuts()]
    assert "Ctrl+Shift+Z" in seqs and "Ctrl+Y" in seqs
    assert len(seqs) == len(set(seqs))  # bound once each: no "ambiguous shortcut"
    taken = {}
    for a in win.actions():  # no other action claims the same keys
        for k in a.shortcuts():
            assert k.toString() not in taken, (a.objectName(), taken.get(k.toString()))
            taken[k.toString()] = a.objectName()
    click_row(qtbot, win, "conv1")
    for redo in (QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")):
        type_bits(qtbot, win, 4)
        win.undoAction.trigger()
        assert win.session.config.resolve("conv1").weight.bits == 8
        win.table.view.setFocus()
        combo = redo[0]
        qtbot.keyClick(win.table.view, combo.key(), combo.keyboardModifiers())
        assert win.session.config.resolve("conv1").weight.bits == 4, redo.toString()
        win.undoAction.trigger()


def test_open_sample_from_the_file_menu(window, qtbot):
    win = window
    acts = {a.data(): a for a in win.samplesMenu.actions()}
    assert set(acts) == {"sample:digits_cnn", "sample:digits_mobilenet", "sample:tiny_lm"}
    with qtbot.waitSignal(win.modelLoaded, timeout=60_000):
        acts["sample:digits_mobilenet"].trigger()
    assert win.session.handle.name == "digits_mobilenet"
    assert "digits_mobilenet" in win.windowTitle()


def test_weights_only_file_asks_for_the_architecture(window, qtbot, tmp_path):
    import json

    from safetensors.torch import save_file

    from quantviz.model.samples import build_sample

    win = window
    _, module = build_sample("digits_cnn")
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    (tmp_path / "weights.safetensors.json").write_text(json.dumps({"input_shape": [1, 1, 8, 8]}))
    asked = []

    def answer(p):
        asked.append(p)
        return "quantviz.model.samples:DigitsCNN"

    win.ask_arch = answer
    with qtbot.waitSignal(win.modelLoaded, timeout=60_000):
        win.open_model(str(path))
    assert asked == [str(path)]
    assert win.session.handle.source == f"{path}::quantviz.model.samples:DigitsCNN"
    # a typed source works the same way (File > Open model source…)
    with qtbot.waitSignal(win.modelLoaded, timeout=60_000):
        win.open_model("sample:digits_cnn")


def test_every_sweep_is_its_own_removable_curve(window, qtbot):
    win = window
    tp = win.tradeoff
    win.sweepBitsEdit.setText("2,4")
    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        win.sweepAction.trigger()
    win.controls.granularityCombo.setCurrentIndex(0)  # per tensor as the default below
    win.controls.applyAllButton.click()
    win.sweepBitsEdit.setText("3,8")
    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        win.sweepAction.trigger()
    series = win.session.series
    assert len(series) == 2 and series[0] != series[1]
    qtbot.waitUntil(lambda: sorted(len(c.xData) for c in tp.curves.values()) == [2, 2])
    assert set(tp.curves) == set(series)
    # a third sweep cancelled half-way leaves the two complete ones
    win.sweepBitsEdit.setText("2,3,4,5,6,8")
    win.sweepAction.trigger()
    win.cancelAction.trigger()
    qtbot.waitUntil(lambda: not win.jobRunner.running, timeout=30_000)
    assert all(s in win.session.series for s in series)
    win.rebuild_curves_menu()
    names = [a.text() for a in win.curvesMenu.actions()]
    assert series[0] in names
    win.remove_curve(series[0])
    qtbot.waitUntil(lambda: series[0] not in tp.curves)
    assert series[0] not in tp.curves and series[1] in tp.curves
    # a bad list of bit-widths is reported, nothing starts
    win.sweepBitsEdit.setText("2,x")
    with qtbot.waitSignal(win.errors.errorShown):
        win.sweepAction.trigger()
    assert not win.jobRunner.running


def test_quit_asks_when_work_is_unsaved(window, qtbot, tmp_path):
    win = window
    assert not win.session.modified
    click_row(qtbot, win, "fc1")
    type_bits(qtbot, win, 5)
    assert win.session.modified
    asked = []
    win.confirm_close = lambda: asked.append(1) or "cancel"
    assert not win.close()
    assert win.isVisible() and asked == [1]
    path = tmp_path / "s.quantviz"
    assert win.sessionActions.save_session(str(path))
    assert not win.session.modified  # saved: closing asks nothing
    win.confirm_close = lambda: pytest.fail("asked although everything is saved")
    assert win.close()


def test_save_as_is_a_snapshot_and_the_current_one_is_marked(window, qtbot):
    win = window
    click_row(qtbot, win, "fc1")
    win.configs.save_as("snap")
    type_bits(qtbot, win, 3)
    s = win.session
    assert s.current_name == "default"
    assert s.configs["snap"].resolve("fc1").weight.bits == 8  # the copy did not move
    items = {win.configs.list.item(i).text() for i in range(win.configs.list.count())}
    assert "▸ default" in items and "snap" in items


def test_torchscript_disables_activations_and_says_why(window, qtbot, tmp_path):
    from quantviz.model.samples import build_sample

    win = window
    _, module = build_sample("digits_cnn")
    path = tmp_path / "m.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), str(path))
    (tmp_path / "m.ts.json").write_text('{"input_shape": [1, 1, 8, 8]}')
    with qtbot.waitSignal(win.modelLoaded, timeout=60_000):
        win.open_model(str(path), "sample:digits")
    c = win.controls
    assert not c.activationRadio.isEnabled()
    assert "TorchScript" in c.activationRadio.toolTip()
    text = win.activations.info.text()
    assert "TorchScript" in text and "being collected" not in text


def test_progress_is_monotone_with_stage_counts(window, qtbot):
    win = window
    seen = []  # (bar value, bar text) after every progress event
    win.jobRunner.progress.connect(
        lambda f, m: seen.append((win.progressBar.value(), win.progressBar.format()))
    )
    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        win.jobs.uniform_sweep((2, 3, 4))
    values = [v for v, _ in seen]
    assert values and all(b >= a for a, b in itertools.pairwise(values))
    # the float baseline is a small first share, not 100% (the bar used to sit at 100%
    # from the baseline to the end)
    second = next(v for v, f in seen if "point 2/3" in f)
    assert 300 <= second <= 700
    assert values[-1] == 1000
    assert any("forward" in f and "/" in f for _, f in seen)


def test_tooltips_help_and_about(window, qtbot):
    win = window
    c = win.controls
    for w in (
        c.floatCheck,
        c.bitsSpin,
        c.quantizerCombo,
        c.symmetricCheck,
        c.restrictedRangeCheck,
        c.granularityCombo,
        c.groupSizeSpin,
        c.calibrationCombo,
    ):
        assert len(w.toolTip()) > 20, w.objectName()
    assert "zero point is rounded" in c.calibrationCombo.toolTip()  # why min/max can clip
    win.helpAction.trigger()
    assert win._help_box.isVisible() and "Quick guide" in win._help_box.text()
    win._help_box.close()
    assert win.aboutAction.text() == "About quantviz"


def test_disabled_controls_look_disabled():
    from PySide6.QtGui import QPalette

    from quantviz.gui.theme import _dark_palette, _light_palette

    for pal in (_light_palette(), _dark_palette()):
        for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
            on = pal.color(QPalette.ColorGroup.Active, role)
            off = pal.color(QPalette.ColorGroup.Disabled, role)
            assert abs(on.lightness() - off.lightness()) > 40


def test_layer_table_fits_its_panel(window, qtbot):
    win = window
    win.resize(1680, 1000)
    qtbot.waitUntil(lambda: win.width() == 1680)
    QApplication.processEvents()
    view = win.table.view
    hh = view.horizontalHeader()
    total = sum(hh.sectionSize(i) for i in range(hh.count()))
    assert total <= view.viewport().width() + 1
    assert not view.horizontalScrollBar().isVisible()


def test_one_point_tradeoff_axes(window, qtbot):
    win = window
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        win.evaluate()
    tp = win.tradeoff
    qtbot.waitUntil(lambda: tp.point_count() == 1)
    (x0, x1), (y0, y1) = tp.plot.getPlotItem().getViewBox().viewRange()
    e = tp.entries[0]
    assert y1 - y0 < 0.2 and y0 < e.value < y1  # not 0.6..1.4 around an accuracy
    ticks = tp.top_axis.tickStrings([x0 + (x1 - x0) * k / 4 for k in range(1, 4)], 1, 1)
    assert len(set(ticks)) == 3  # distinct labels, not a row of "4.0×"


def test_edit_storm_during_an_evaluation_stays_responsive(window, qtbot):
    """2,000 edits while an evaluation runs: the evaluation finishes and the app answers."""
    win = window
    click_row(qtbot, win, "fc1")
    spin = win.controls.bitsSpin
    done = []
    win.jobDone.connect(done.append)
    win.evaluate()
    for i in range(2000):
        spin.setValue(3 + i % 6)
        if i % 50 == 0:
            QApplication.processEvents()
    qtbot.waitUntil(lambda: bool(done) and not win.jobRunner.running, timeout=60_000)
    fired = []
    QTimer.singleShot(0, lambda: fired.append(1))
    qtbot.waitUntil(lambda: bool(fired), timeout=5_000)
    assert win.session.config.resolve("fc1").weight.bits == 3 + 1999 % 6
    assert win.undoStack.count() > 0
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        win.evaluate()  # and it still evaluates


def test_export_dialog_keeps_the_name_the_user_typed(window, qtbot, tmp_path):
    win = window
    win.show_export_dialog()
    dlg = win.exportDialog
    dlg.set_format("aimet")
    assert dlg.pathEdit.text().endswith(".encodings")  # a name we made follows the format
    dlg.pathEdit.clear()
    target = tmp_path / "cfg.aimet.json"
    qtbot.keyClicks(dlg.pathEdit, str(target))  # typed, as a user does
    dlg.configCombo.setCurrentIndex(0)
    dlg.set_format("json")
    dlg.set_format("aimet")
    assert dlg.pathEdit.text() == str(target)  # never renamed behind the user's back
    assert not dlg.suffixHint.isVisible()
    with qtbot.waitSignal(dlg.exported, timeout=60_000):
        dlg.start_export()
    assert target.is_file() and not (tmp_path / "cfg.encodings").exists()
    dlg.set_format("onnx")  # a suffix that does not fit: said, not silently changed
    assert dlg.pathEdit.text() == str(target)
    assert ".onnx" in dlg.suffixHint.text()
    dlg.close()


def test_session_naming_user_code_asks_before_running_it(window, qtbot, tmp_path):
    """A .quantviz file whose model needs code from a folder: asked, refused, nothing ran."""
    import json

    from safetensors.torch import save_file

    from quantviz.model.samples import build_sample

    win = window
    marker = tmp_path / "ran.txt"
    (tmp_path / "evilarch.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from quantviz.model.samples import DigitsCNN\n"
        "def build():\n    return DigitsCNN()\n"
    )
    _, module = build_sample("digits_cnn")
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(weights))
    (tmp_path / "w.safetensors.json").write_text('{"input_shape": [1, 1, 8, 8]}')
    path = tmp_path / "s.quantviz"
    assert win.sessionActions.save_session(str(path))
    doc = json.loads(path.read_text())
    doc["model"] = f"{weights}::evilarch:build"
    path.write_text(json.dumps(doc))
    asked = []
    win.confirm_trust = lambda msg: asked.append(msg) or False
    before = win.session.handle
    with qtbot.waitSignal(win.modelLoadFailed, timeout=60_000):
        win.sessionActions.open_session(str(path))
    assert asked and "evilarch" in asked[0]
    assert not marker.exists() and win.session.handle is before


def test_opening_another_model_asks_about_unsaved_work(window, qtbot):
    win = window
    click_row(qtbot, win, "fc1")
    type_bits(qtbot, win, 5)
    win.confirm_close = lambda: "cancel"
    win.open_model("sample:digits_mobilenet")
    assert not win.loadRunner.running and win.session.handle.name == "digits_cnn"
    assert win.session.config.resolve("fc1").weight.bits == 5  # nothing lost
    win.confirm_close = lambda: "discard"
    with qtbot.waitSignal(win.modelLoaded, timeout=60_000):
        win.open_model("sample:digits_mobilenet")


def test_ctrl_z_right_after_typing_in_the_bits_box(window, qtbot):
    from PySide6.QtCore import Qt

    win = window
    click_row(qtbot, win, "conv2")
    type_bits(qtbot, win, 4)  # focus stays in the spin box
    assert win.controls.bitsSpin.hasFocus() or win.controls.bitsSpin.lineEdit().hasFocus()
    qtbot.keyClick(
        win.controls.bitsSpin.lineEdit(), Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier
    )
    assert win.session.config.resolve("conv2").weight.bits == 8
    qtbot.keyClick(
        win.controls.bitsSpin.lineEdit(), Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier
    )
    assert win.session.config.resolve("conv2").weight.bits == 4


def test_layer_table_at_1366_keeps_size_and_sensitivity(window, qtbot):
    from quantviz.gui.layer_table import C_BYTES, C_SENS, C_SQNR

    win = window
    win.resize(1366, 740)
    qtbot.waitUntil(lambda: win.width() == 1366)
    QApplication.processEvents()
    view = win.table.view
    hh = view.horizontalHeader()
    assert not any(hh.isSectionHidden(c) for c in (C_SQNR, C_BYTES, C_SENS))
    shown = sum(hh.sectionSize(i) for i in range(hh.count()) if not hh.isSectionHidden(i))
    assert shown <= view.viewport().width() + 1
    win.resize(1680, 1000)  # room again: every column comes back
    qtbot.waitUntil(lambda: win.width() == 1680)
    QApplication.processEvents()
    assert not any(hh.isSectionHidden(i) for i in range(hh.count()))


def test_open_data_loads_off_the_gui_thread_and_recalibrates(window, qtbot, tmp_path):
    import numpy as np

    win = window
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.standard_normal((30, 1, 8, 8)).astype("f4"), y=np.arange(30) % 10)
    with qtbot.waitSignals([win.dataLoaded, win.statsReady], timeout=60_000):
        win.open_data(str(path))
    assert win.session.data_source == str(path) and len(win.session.data) == 30
    assert set(win.session.activation_stats) == set(win.session.fqns)
    bad = tmp_path / "bad.npz"
    np.savez(bad, z=np.zeros(3))
    with qtbot.waitSignal(win.errors.errorShown, timeout=60_000):
        win.open_data(str(bad))
    assert win.session.data_source == str(path)  # the previous data stays
