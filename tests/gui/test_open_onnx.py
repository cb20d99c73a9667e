"""File > Open model with ONNX files: the layer table fills from the graph, a QDQ file opens
with its own configuration, a broken file is reported and the open model kept."""

from __future__ import annotations

import warnings

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture
def onnx_files(tmp_path):
    import torch

    from quantviz.core import LayerConfig, ModelConfig, QuantSpec
    from quantviz.io.exporters.onnx_fmt import export_onnx
    from quantviz.model import load_model

    h = load_model("sample:digits_cnn")
    path = tmp_path / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            h.module,
            (h.example_input,),
            str(path),
            dynamo=False,
            input_names=["input"],
            dynamic_axes={"input": {0: "batch"}},
        )
    qdq = tmp_path / "cnn_w4.onnx"
    w4 = QuantSpec(bits=4, granularity="per_channel")
    export_onnx(h, ModelConfig(default=LayerConfig(weight=w4, activation=None)), qdq)
    return path, qdq


def test_open_onnx_files(window, qtbot, onnx_files, tmp_path):
    from quantviz.gui.layer_table import C_A, C_KIND, C_NAME, C_W

    win = window
    path, qdq = onnx_files
    with qtbot.waitSignals([win.modelLoaded, win.statsReady], timeout=60_000):
        win.open_model(str(path), "sample:digits")
    m = win.table.model
    assert win.session.handle.flavour == "onnx"
    assert [m.data(m.index(r, C_NAME)) for r in range(m.rowCount())] == [
        "conv1",
        "conv2",
        "fc1",
        "fc2",
    ]
    assert m.data(m.index(m.row_of("fc1"), C_KIND)) == "linear"
    assert "cnn" in win.modelLabel.text()
    # activation statistics came from onnxruntime's intermediate outputs
    assert set(win.session.activation_stats) == {"conv1", "conv2", "fc1", "fc2"}

    # a QDQ file opens with the configuration it was quantized with
    with qtbot.waitSignal(win.modelLoaded, timeout=60_000):
        win.open_model(str(qdq), "sample:digits")
    assert win.session.current_name == "from file"
    row = m.row_of("conv2")
    assert m.data(m.index(row, C_W)) == "W4 sym ch"
    assert m.data(m.index(row, C_A)) == "float"

    # a broken file: reported by name, the QDQ model stays open
    before = win.session.handle
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(path.read_bytes()[:300])
    with qtbot.waitSignals([win.modelLoadFailed, win.errors.errorShown], timeout=30_000):
        win.open_model(str(bad))
    assert win.session.handle is before
    box = win.errors.last_box
    assert "cut.onnx" in box.informativeText() + box.text()
    assert "not a valid ONNX model" in box.informativeText() + box.text() + box.detailedText()
    assert m.rowCount() == 4


def test_onnx_file_with_a_fixed_batch_calibrates_and_evaluates(window, qtbot, tmp_path):
    """torch.onnx.export's default (no dynamic axes) fixes the batch at 1: the calibration
    statistics failed ('Got invalid dimensions for input ... Got: 256 Expected: 1') in an
    error box, and activation quantization could not be evaluated."""
    import torch
    from PySide6.QtCore import Qt

    from quantviz.core import LayerConfig, ModelConfig, QuantSpec
    from quantviz.model import load_model

    win = window
    h = load_model("sample:digits_cnn")
    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(h.module, (h.example_input,), str(path), dynamo=False)
    shown: list[str] = []
    win.errors.errorShown.connect(lambda *a: shown.append(str(a)))
    with qtbot.waitSignals([win.modelLoaded, win.statsReady], timeout=60_000):
        win.open_model(str(path), "sample:digits")
    assert win.session.handle.flavour == "onnx" and win.session.handle.meta["static_batch"]
    assert set(win.session.activation_stats) == {"conv1", "conv2", "fc1", "fc2"}
    assert shown == []
    # W8 weights and activations: F5 evaluates in onnxruntime, one sample at a time
    w8 = QuantSpec(bits=8, granularity="per_channel")
    a8 = QuantSpec(bits=8, granularity="per_tensor", symmetric=False)
    win.push_config(ModelConfig(default=LayerConfig(weight=w8, activation=a8)), "W8A8")
    qtbot.waitUntil(lambda: not win.jobs.runner.running, timeout=30_000)
    with qtbot.waitSignal(win.jobDone, timeout=120_000) as blocker:
        qtbot.keyClick(win, Qt.Key.Key_F5)
    assert blocker.args == ["evaluate"] and shown == []
    res = win.session.results[-1].result
    assert res.value > 0.9


def test_rank_proxies_on_an_onnx_file(window, qtbot, onnx_files, capsys):
    """Run > Rank sensitivity proxies on an ONNX file ranks the proxies onnxruntime can give
    (it failed: 'element 0 of tensors does not require grad' from the Fisher proxy); the CLI
    asked for a gradient proxy says which and what to rank instead."""
    from quantviz.cli import main

    win = window
    path, _qdq = onnx_files
    shown: list[str] = []
    win.errors.errorShown.connect(lambda *a: shown.append(str(a)))
    with qtbot.waitSignals([win.modelLoaded, win.statsReady], timeout=60_000):
        win.open_model(str(path), "sample:digits")
    with qtbot.waitSignal(win.jobDone, timeout=120_000) as blocker:
        win.proxiesAction.trigger()
    assert blocker.args == ["proxies"] and shown == []
    t = win.debugView.proxyTable
    heads = [t.horizontalHeaderItem(j).text().split("\n")[0] for j in range(t.columnCount())]
    assert heads == ["layer", "scheme", "drop (pts)", "mse", "output_sqnr", "kl"]
    assert t.rowCount() == 4
    argv = ["proxies", "--model", str(path), "--data", "sample:digits", "--no-progress"]
    assert main([*argv, "--proxy", "kl,fisher"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("quantviz: error: cnn: proxy fisher: needs")
    assert "--proxy mse,output_sqnr,kl" in err[0]
