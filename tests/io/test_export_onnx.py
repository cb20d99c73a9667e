"""ONNX export of the samples: weight codes + DequantizeLinear, QDQ on static activations.

Tolerance: with graph optimisations off, onnxruntime runs the QDQ graph as written; its
QuantizeLinear divides by the scale where quantviz multiplies by the reciprocal, so an
activation at a rounding tie can land one code away. Measured max |diff| over the 360 digits
test images with this file's mixed config: 3.8e-6 (digits_cnn) and 5.7e-6
(digits_mobilenet), outputs up to ~19; one tie in another config gave 0.022. Weights alone
match to float rounding (< 1e-5). We assert max |diff| <= 1e-2 * max |output| + 1e-4 and
100% top-1 agreement. That comparison, optimisations off, is the check of the export.

With onnxruntime's default optimisations (ORT_ENABLE_ALL, what a deployment runs) the QDQ
pairs are fused into integer kernels (QLinearConv / QGemm / QLinearAdd) whose requantization
rounds differently from QDQ in float; which ops are fused and which int8 kernel runs (AVX2,
AVX512-VNNI, ...) depends on the onnxruntime version and on the CPU, so a tie-near-the-top
input can change its top-1 class. Measured max |diff| / max |output|: 0.009 (digits_cnn) and
0.032 (digits_mobilenet) with onnxruntime 1.32 here, 100% top-1 agreement; a fresh machine
with onnxruntime 1.32 got 98.6% on digits_mobilenet, failing the former ">= 99%". So the
optimised run asserts only what holds whatever the version: onnxruntime's optimiser accepts
the graph and returns finite outputs of the same shape, and the fused model is the same
model: >= 95% top-1 agreement. A wrong scale, zero point, axis or transposition gives
agreement near chance (10 classes: ~10%); rounding differences move only inputs whose top-2
margin is within the requantization error (observed <= 1.4% of inputs). No onnxruntime
version is pinned.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from test_export_common import SAMPLES, handle_and_data, mixed_config, stats_for  # noqa: E402

from quantviz.core import LayerConfig, ModelConfig, QuantSpec  # noqa: E402
from quantviz.eval import apply_config  # noqa: E402
from quantviz.io.exporters import export  # noqa: E402


def _session(path, optimise: bool):
    so = ort.SessionOptions()
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimise
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _ops(model) -> list[str]:
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("source", SAMPLES)
def test_onnxruntime_matches_fake_quantized_model(tmp_path, source):
    h, data = handle_and_data(source)
    cfg = mixed_config(h)
    stats = stats_for(source)
    out = tmp_path / "m.onnx"
    res = export(h, cfg, "onnx", out, stats=stats)
    assert res.details["opset"] == 21
    # k-means and NF4 layers are not QDQ-expressible: reported by name, written as constants
    assert [f for f, _ in res.unsupported] == [h.fqns[0], h.fqns[-1]]
    assert all("dequantized float constant" in why for _, why in res.unsupported)
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    ops = _ops(model)
    n_uniform = len(h.fqns) - 2
    # weights + the inputs of every layer but the last (its override has no activation spec)
    assert ops.count("DequantizeLinear") == n_uniform + len(h.fqns) - 1
    # weights are integer initializers feeding DequantizeLinear: Q nodes only on activations
    assert ops.count("QuantizeLinear") == len(h.fqns) - 1
    blocked = [n for n in model.graph.node if any(a.name == "block_size" for a in n.attribute)]
    assert len(blocked) == 1  # the per-group layer's DQ

    x = data.x[:512]
    with torch.no_grad(), apply_config(h, cfg, stats=stats):
        ref = h.module(x).numpy()
    y = _session(out, optimise=False).run(None, {"input": x.numpy()})[0]
    diff = float(np.abs(y - ref).max())
    assert diff <= 1e-2 * float(np.abs(ref).max()) + 1e-4, diff
    assert (y.argmax(1) == ref.argmax(1)).mean() == 1.0
    # optimised (fused integer kernels): version- and CPU-dependent rounding, see the docstring
    y2 = _session(out, optimise=True).run(None, {"input": x.numpy()})[0]
    assert y2.shape == ref.shape and np.isfinite(y2).all()
    assert (y2.argmax(1) == ref.argmax(1)).mean() >= 0.95


def test_weight_only_export_is_exact_to_float_rounding(tmp_path):
    h, data = handle_and_data(SAMPLES[0])
    cfg = mixed_config(h, activations=False)
    out = tmp_path / "w.onnx"
    export(h, cfg, "onnx", out)
    x = data.x[:256]
    with torch.no_grad(), apply_config(h, cfg):
        ref = h.module(x).numpy()
    y = _session(out, optimise=False).run(None, {"input": x.numpy()})[0]
    assert np.abs(y - ref).max() < 1e-4


def test_per_tensor_and_per_axis_parameters(tmp_path):
    h, _ = handle_and_data(SAMPLES[0])
    cfg = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=8, granularity="per_channel")),
        overrides=(("fc2", LayerConfig(weight=QuantSpec(bits=12, symmetric=False))),),
    )
    out = tmp_path / "m.onnx"
    export(h, cfg, "onnx", out)
    model = onnx.load(str(out))
    inits = {t.name: t for t in model.graph.initializer}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    conv = dq["conv1.weight"]
    assert [a.i for a in conv.attribute if a.name == "axis"] == [0]
    assert list(inits[conv.input[1]].dims) == [16]
    assert inits[conv.input[2]].data_type == onnx.TensorProto.INT8
    fc2 = dq["fc2.weight"]
    assert list(inits[fc2.input[1]].dims) == []  # per tensor: a scalar scale
    assert inits[fc2.input[2]].data_type == onnx.TensorProto.UINT16  # 12-bit asymmetric


def test_dynamic_activations_are_reported_and_strict_refuses(tmp_path):
    h, _ = handle_and_data(SAMPLES[0])
    cfg = ModelConfig(
        default=LayerConfig(weight=QuantSpec(), activation=QuantSpec(bits=8, dynamic=True))
    )
    res = export(h, cfg, "onnx", tmp_path / "a.onnx")
    assert [f for f, _ in res.unsupported] == h.fqns
    assert all("dynamic" in why for _, why in res.unsupported)
    with pytest.raises(ValueError, match="conv1.*dynamic"):
        export(h, cfg, "onnx", tmp_path / "b.onnx", strict=True)
    assert not (tmp_path / "b.onnx").exists()


def test_static_activation_without_stats_is_an_error(tmp_path):
    h, _ = handle_and_data(SAMPLES[0])
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(), activation=QuantSpec()))
    with pytest.raises(ValueError, match="layer conv1: activation"):
        export(h, cfg, "onnx", tmp_path / "a.onnx")
    assert list(tmp_path.iterdir()) == []
