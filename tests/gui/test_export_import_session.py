"""File > Export…, Import configuration…, Save / Open session and Open Recent, through the GUI."""

import json

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt

from quantviz.core.defaults import DEFAULT_WEIGHT
from quantviz.core.spec import QuantSpec
from quantviz.session import set_layer_spec

KMEANS = QuantSpec(bits=4, quantizer="kmeans")


@pytest.fixture(autouse=True)
def private_settings(tmp_path_factory):
    """QSettings (the recent-sessions list) in a temporary directory, never the user's."""
    d = tmp_path_factory.mktemp("settings")
    for fmt in (QSettings.Format.IniFormat, QSettings.Format.NativeFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(d))
    return d


def _kmeans_fc1(win):
    win.push_config(set_layer_spec(win.session.config, ["fc1"], "weight", KMEANS), "fc1 kmeans")


def _export(qtbot, dlg, fmt, path):
    dlg.set_format(fmt)
    dlg.pathEdit.setText(str(path))
    with qtbot.waitSignal(dlg.exported, timeout=60_000) as blocker:
        qtbot.mouseClick(dlg.exportButton, Qt.MouseButton.LeftButton)
    assert not dlg.busyBar.isVisible() and dlg.exportButton.isEnabled()
    return blocker.args[0]


def test_export_every_format_through_the_dialog(window, qtbot, tmp_path):
    win = window
    _kmeans_fc1(win)
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        win.evaluate()  # the report then has a result summary
    win.exportAction.trigger()
    dlg = win.exportDialog
    assert dlg.objectName() == "exportDialog" and dlg.isVisible()
    assert dlg.configCombo.currentText() == "default"
    for fmt, name in (
        ("json", "c.json"),
        ("yaml", "c.yaml"),
        ("safetensors", "w.safetensors"),
        ("onnx", "m.onnx"),
        ("aimet", "a.encodings"),
        ("html", "r.html"),
    ):
        res = _export(qtbot, dlg, fmt, tmp_path / name)
        assert res.format == fmt and res.paths[0] == tmp_path / name
        assert all(p.is_file() and p.stat().st_size > 0 for p in res.paths)
        assert str(tmp_path / name) in dlg.resultLabel.text()
        if fmt == "aimet":  # k-means has no affine encoding: listed by name
            assert "fc1" in dlg.unsupported_names()
            assert dlg.unsupportedList.isVisible()
        if fmt == "json":
            assert not dlg.unsupportedList.isVisible()
            doc = json.loads((tmp_path / name).read_text())
            assert doc["layers"]["fc1"]["weight"]["quantizer"] == "kmeans"
    html = (tmp_path / "r.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # trade-off plot + histogram grabs
    assert 'id="summary"' in html  # the evaluated configuration's numbers
    assert len(list(tmp_path.glob("*.tmp*"))) == 0


def test_strict_export_fails_cleanly(window, qtbot, tmp_path):
    win = window
    _kmeans_fc1(win)
    win.show_export_dialog()
    dlg = win.exportDialog
    dlg.set_format("aimet")
    assert dlg.pathEdit.text().endswith(".encodings")  # the suffix follows the format
    dlg.pathEdit.setText(str(tmp_path / "strict.encodings"))
    dlg.strictCheck.setChecked(True)
    with qtbot.waitSignals([dlg.exportFailed, win.errors.errorShown], timeout=60_000):
        qtbot.mouseClick(dlg.exportButton, Qt.MouseButton.LeftButton)
    assert "fc1" in win.errors.last_box.informativeText()
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    assert dlg.exportButton.isEnabled()
    # a wrong suffix is refused with a message naming the file
    dlg.strictCheck.setChecked(False)
    dlg.set_format("json")
    dlg.pathEdit.setText(str(tmp_path / "c.txt"))
    with qtbot.waitSignal(dlg.exportFailed, timeout=60_000):
        dlg.start_export()
    assert "c.txt" in win.errors.last_box.informativeText()


def test_import_bad_config_changes_nothing(window, qtbot, tmp_path):
    win = window
    before = win.session.config
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "format": "quantviz-config",
                "version": 1,
                "default": {"weight": {"bits": 0}},
                "layers": {"nope": {"weight": None}, "fc1": {"weight": {"quantizer": "x"}}},
            }
        )
    )
    with qtbot.waitSignal(win.errors.errorShown) as blocker:
        assert not win.sessionActions.import_config(str(bad))
    title, message = blocker.args
    assert "3 problems" in title
    for part in ("default.weight.bits", "layers.fc1.weight.quantizer", "layers.nope"):
        assert part in message
    assert "Nothing was changed" in win.errors.last_box.informativeText()
    assert win.session.config == before
    assert win.undoStack.count() == 0


def test_import_good_config_is_one_undoable_step(window, qtbot, tmp_path):
    win = window
    good = tmp_path / "good.yaml"
    good.write_text(
        "format: quantviz-config\nversion: 1\ndefault:\n  weight: {bits: 6}\n"
        "layers:\n  fc1:\n    weight: {bits: 3, quantizer: kmeans}\n"
    )
    win.session.select(["fc1"])
    with qtbot.waitSignal(win.sessionActions.configImported):
        win.sessionActions.import_config(str(good))
    cfg = win.session.config
    assert cfg.resolve("fc1").weight == QuantSpec(bits=3, quantizer="kmeans")
    assert cfg.resolve("conv1").weight.bits == 6
    assert win.histogram.level_count() == 8  # the views follow
    assert win.undoStack.count() == 1 and win.undoStack.undoText() == "import good.yaml"
    win.undoAction.trigger()
    assert win.session.config.resolve("fc1").weight == DEFAULT_WEIGHT
    assert win.histogram.level_count() == 256


def test_session_round_trip_and_recent_menu(window, qtbot, tmp_path):
    from quantviz.gui.app import create_main_window

    win = window
    s = win.session
    s.save_as("w4 fc1")
    s.make_current("w4 fc1")
    _kmeans_fc1(win)
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        win.evaluate()
    path = tmp_path / "study.quantviz"
    with qtbot.waitSignal(win.sessionActions.sessionSaved):
        assert win.sessionActions.save_session(str(path))
    assert path.is_file()

    win2 = create_main_window()
    win2.confirm_close = lambda: "discard"
    qtbot.addWidget(win2)
    try:
        with qtbot.waitSignals([win2.modelLoaded, win2.statsReady], timeout=60_000):
            win2.show()
        sa = win2.sessionActions
        sa.rebuild_recent_menu()
        assert sa.recent_paths_in_menu() == [str(path.resolve())]  # saved by the first window
        with qtbot.waitSignal(sa.sessionOpened, timeout=60_000):
            sa.recentMenu.actions()[0].trigger()
        s2 = win2.session
        assert s2.config_names == ["default", "w4 fc1"]
        assert s2.current_name == "w4 fc1"
        assert s2.configs["w4 fc1"].resolve("fc1").weight == KMEANS
        assert [(e.name, e.series) for e in s2.results] == [("w4 fc1", "evaluations")]
        assert s2.results[0].value == pytest.approx(s.results[0].value)
        assert s2.results[0].config == s.results[0].config
        assert s2.data_source == s.data_source
        qtbot.waitUntil(lambda: win2.tradeoff.point_count() == 1)
    finally:
        assert win2.shutdown(timeout=30)
        win2.close()


def test_failed_session_open_leaves_state_and_prunes_recent(window, qtbot, tmp_path):
    win = window
    sa = win.sessionActions
    win.session.save_as("mine")
    win.session.make_current("mine")
    before = (dict(win.session.configs), win.session.current_name, win.session.handle)
    # a layer this model does not have: refused in the loading thread, nothing changes
    path = tmp_path / "other.quantviz"
    assert sa.save_session(str(path))
    doc = json.loads(path.read_text())
    doc["configs"]["mine"]["layers"] = {"no_such_layer": {"weight": None}}
    path.write_text(json.dumps(doc))
    with qtbot.waitSignals([sa.sessionFailed, win.errors.errorShown], timeout=60_000):
        sa.open_session(str(path))
    assert "no_such_layer" in win.errors.last_box.informativeText()
    assert (dict(win.session.configs), win.session.current_name, win.session.handle) == before
    # a model that cannot be opened: the load fails, nothing changes
    doc = json.loads(path.read_text())
    doc["model"] = str(tmp_path / "missing.pt")
    doc["configs"]["mine"]["layers"] = {}
    path.write_text(json.dumps(doc))
    with qtbot.waitSignal(sa.sessionFailed, timeout=60_000) as blocker:
        sa.open_session(str(path))
    assert "missing.pt" in blocker.args[0]
    assert (dict(win.session.configs), win.session.current_name, win.session.handle) == before
    # not a session file at all
    junk = tmp_path / "junk.quantviz"
    junk.write_text("{not json")
    with qtbot.waitSignal(sa.sessionFailed):
        sa.open_session(str(junk))
    assert "junk.quantviz" in win.errors.last_box.informativeText()
    assert (dict(win.session.configs), win.session.current_name, win.session.handle) == before
    # the recent list keeps at most 8 and drops files that are gone
    for i in range(10):
        p = tmp_path / f"s{i}.quantviz"
        p.write_text("{}")
        sa.add_recent(str(p))
    assert len(sa.recent()) == 8 and sa.recent()[0].endswith("s9.quantviz")
    (tmp_path / "s9.quantviz").unlink()
    sa.rebuild_recent_menu()
    assert len(sa.recent_paths_in_menu()) == 7
    assert not any(p.endswith("s9.quantviz") for p in sa.recent_paths_in_menu())


def test_safetensors_help_says_where_the_manifest_is(window, qtbot, tmp_path):
    """The format help promised 'a JSON manifest next to it'; the file is written alone,
    its manifest in the safetensors metadata."""
    from quantviz.io.exporters.safetensors_fmt import read_manifest

    win = window
    win.exportAction.trigger()
    dlg = win.exportDialog
    dlg.formatCombo.setCurrentIndex(dlg.formatCombo.findData("safetensors"))
    assert "next to it" not in dlg.formatHelp.text()
    assert "metadata" in dlg.formatHelp.text()
    res = _export(qtbot, dlg, "safetensors", tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == [tmp_path / "w.safetensors"] == list(res.paths)
    assert set(read_manifest(res.paths[0])["layers"]) == {f"{f}.weight" for f in win.session.fqns}


def test_export_waits_for_a_background_job_that_has_the_model(window, qtbot, tmp_path):
    """A job holding the controller's model lock (e.g. a fine-tuned configuration's
    calibration, with other weights swapped in) is waited for: the export reads the model's
    own weights, never the job's, and leaves them in place."""
    import threading

    import torch
    from safetensors import safe_open

    win = window
    h = win.session.handle
    fqn = h.fqns[-1]
    p = h.weight(fqn)
    own = p.data
    win.exportAction.trigger()
    dlg = win.exportDialog
    dlg.set_format("safetensors")
    out = tmp_path / "w.safetensors"
    dlg.pathEdit.setText(str(out))
    lock = win.controller.model_lock
    assert lock.acquire(timeout=30)
    released = threading.Event()
    try:
        p.data = torch.zeros_like(own)  # what a job holding the model would do
        qtbot.mouseClick(dlg.exportButton, Qt.MouseButton.LeftButton)
        qtbot.wait(300)  # the export is started and must be waiting for the lock
        assert not out.exists() and dlg.busyBar.isVisible()
    finally:
        p.data = own
        lock.release()
        released.set()
    with qtbot.waitSignal(dlg.exported, timeout=60_000):
        pass
    assert p.data.data_ptr() == own.data_ptr()  # the model's own weights, in place again
    lay = h.layer(fqn)
    with safe_open(str(out), "pt") as f:
        scale = f.get_tensor(f"{lay.param_name}:scale")
    # W8 symmetric per-channel (the default, not restricted): [-absmax, absmax] of the
    # model's own weights in 255 steps (the swapped-in zeros would give no such scale)
    want = 2 * own.detach().float().abs().amax(dim=tuple(range(1, own.ndim))) / 255
    torch.testing.assert_close(scale.flatten().float(), want, rtol=1e-5, atol=0)
