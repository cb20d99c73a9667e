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
