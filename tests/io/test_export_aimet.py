"""AIMET 0.6.1 encodings: layout, one entry per channel, AIMET's (negative) offset convention."""

from __future__ import annotations

import json

import pytest
import torch
from test_export_common import SAMPLES, handle_and_data, mixed_config, stats_for

from quantviz.core import LayerConfig, ModelConfig, QuantSpec, quantize
from quantviz.io.exporters import export
from quantviz.io.exporters.aimet import encoding_entries


def _has_onnx() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


KEYS = {"bitwidth", "dtype", "is_symmetric", "max", "min", "offset", "scale"}


@pytest.mark.parametrize("source", SAMPLES)
def test_sample_encodings(tmp_path, source):
    h, _ = handle_and_data(source)
    cfg = mixed_config(h)
    out = tmp_path / "m.encodings"
    res = export(h, cfg, "aimet", out, stats=stats_for(source))
    doc = json.loads(out.read_text())
    assert set(doc) == {"version", "activation_encodings", "param_encodings"}
    assert doc["version"] == "0.6.1"
    # k-means (first layer) and NF4 (last) are not affine grids; per-group is not in 0.6.1
    assert [f for f, _ in res.unsupported] == [h.fqns[0], h.fqns[-2], h.fqns[-1]]
    params = doc["param_encodings"]
    assert set(params) == {h.layers[i].param_name for i in range(1, len(h.fqns) - 2)}
    for lay in h.layers[1:-2]:
        entries = params[lay.param_name]
        spec = cfg.resolve(lay.fqn).weight
        n = lay.weight_shape[0] if spec.granularity == "per_channel" else 1
        assert len(entries) == n
        for e in entries:
            assert set(e) == KEYS and e["dtype"] == "int" and e["bitwidth"] == spec.bits
            assert e["is_symmetric"] in ("True", "False") and isinstance(e["offset"], int)
    acts = doc["activation_encodings"]
    # tensors named as in torch.onnx.export's graph (the first layer reads "input"), or by
    # layer without the onnx package
    first = "input" if _has_onnx() else f"{h.fqns[0]}:input"
    assert len(acts) == len(h.fqns) - 1 and first in acts
    for entries in acts.values():
        assert len(entries) == 1 and set(entries[0]) == KEYS
        assert entries[0]["is_symmetric"] == "False" and entries[0]["offset"] <= 0


def _aimet_qdq(x: torch.Tensor, e: dict) -> torch.Tensor:
    """AIMET's documented reading of an encoding: the grid from bitwidth + min / max.

    scale = (max - min) / (2^b - 1), offset = round(min / scale),
    u = clamp(round(x / scale) - offset, 0, 2^b - 1), x' = (u + offset) * scale
    (scale and offset from the JSON numbers; the quantization in float32, as AIMET's
    kernels run it).
    """
    top = 2 ** e["bitwidth"] - 1
    scale = (e["max"] - e["min"]) / top
    offset = round(e["min"] / scale)
    s32 = torch.tensor(scale, dtype=torch.float32)
    u = torch.clamp(torch.round(x.float() / s32) - offset, 0, top)
    return (u + offset) * s32


SPECS = [
    QuantSpec(bits=8),
    QuantSpec(bits=8, restricted_range=True),
    QuantSpec(bits=4, restricted_range=True, granularity="per_channel"),
    QuantSpec(bits=4, symmetric=False),
    QuantSpec(bits=6, granularity="per_channel", symmetric=False),
    QuantSpec(bits=8, granularity="per_channel"),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.short())
def test_aimet_reading_reproduces_quantviz_weights_exactly(spec):
    """Decoding the file as AIMET does gives quantviz's dequantized weights, bit for bit."""
    torch.manual_seed(1)
    w = torch.randn(16, 3, 3, 3) * torch.rand(16, 1, 1, 1) + 0.1
    r = quantize(w, spec)
    entries = json.loads(json.dumps(encoding_entries(r.fitted.scale, r.fitted.zero_point, spec)))
    rows = w.reshape(len(entries), -1) if len(entries) > 1 else w.reshape(1, -1)
    got = torch.stack([_aimet_qdq(row, e) for row, e in zip(rows, entries)])
    assert torch.equal(got.reshape(w.shape), r.dequantized)
    for e, zp in zip(entries, r.fitted.zero_point.reshape(-1)):
        assert e["scale"] == pytest.approx((e["max"] - e["min"]) / (2 ** e["bitwidth"] - 1))
        if not spec.symmetric:
            assert e["offset"] == -int(zp)
        else:  # AIMET's symmetric offset, restricted range included
            assert e["offset"] == -(2 ** (spec.bits - 1))


def test_restricted_range_is_aimets_symmetric_scale():
    # AIMET's symmetric scale is absmax / (2^(b-1) - 1): quantviz's restricted range
    w = torch.randn(64, 64)
    r = quantize(w, QuantSpec(bits=8, restricted_range=True))
    (e,) = encoding_entries(
        r.fitted.scale, r.fitted.zero_point, QuantSpec(bits=8, restricted_range=True)
    )
    assert e["scale"] == pytest.approx(float(w.abs().max()) / 127, rel=1e-6)
    assert (e["min"], e["max"]) == (-128 * e["scale"], 127 * e["scale"])


def test_activation_names_are_the_onnx_tensor_names_entering_each_layer(tmp_path):
    """Named as AIMET's export names them: the producing op's output in torch.onnx.export's
    graph (BatchNorm folded into the convs by the exporter does not matter)."""
    pytest.importorskip("onnx")
    import io
    import warnings

    import onnx
    from models import efficientnet_lite_small, handle_of

    from quantviz.data.datasets import EvalData
    from quantviz.eval import calibrate, needs_calibration, run

    model = efficientnet_lite_small()
    x = torch.randn(4, 3, 32, 32)
    h = handle_of(model, x[:1])
    cfg = ModelConfig(
        default=LayerConfig(
            weight=QuantSpec(bits=8, granularity="per_channel"), activation=QuantSpec(bits=8)
        )
    )
    stats: dict = {}
    run(calibrate(h, EvalData("t", x, None, x), needs_calibration(h, cfg), stats))
    res = export(h, cfg, "aimet", tmp_path / "m.encodings", stats=stats)
    acts = json.loads((tmp_path / "m.encodings").read_text())["activation_encodings"]
    # independent: torch's own export, and which tensor feeds each layer's node
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x[:1],), buf, dynamo=False, input_names=["input"])
    graph = onnx.load_from_string(buf.getvalue()).graph
    feeds = {}
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm"):
            scope = node.name.rsplit("/", 1)[0]  # /blocks/blocks.0/depthwise/depthwise.0
            feeds[scope] = node.input[0]
    produced = {o for n in graph.node for o in n.output} | {"input"}
    assert res.details["activation_names"] == "onnx"
    assert len(acts) == len(h.fqns) == 50
    assert set(acts) <= produced  # every key is a tensor of the graph
    assert "input" in acts and "/conv_stem/conv_stem.2/Clip_output_0" in acts
    assert "/blocks/blocks.0/project/project.0/Conv_output_0" in acts  # folded BN
    assert set(acts) == set(feeds.values())
    assert not any(k.endswith(":input") for k in acts)


def test_unexpressible_schemes_are_listed_by_layer(tmp_path):
    h, _ = handle_and_data(SAMPLES[0])
    cfg = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=8)),
        overrides=(
            ("conv1", LayerConfig(weight=QuantSpec(bits=3))),
            ("conv2", LayerConfig(weight=QuantSpec(granularity="per_channel", axis=1))),
            ("fc1", LayerConfig(weight=QuantSpec(quantizer="fp8_e4m3"))),
            ("fc2", LayerConfig(weight=QuantSpec(), activation=QuantSpec(dynamic=True))),
        ),
    )
    res = export(h, cfg, "aimet", tmp_path / "a.encodings")
    why = dict(res.unsupported)
    assert "bitwidth >= 4" in why["conv1"]
    assert "axis 1" in why["conv2"]
    assert "fp8_e4m3" in why["fc1"]
    assert "dynamic" in why["fc2"]
    doc = json.loads((tmp_path / "a.encodings").read_text())
    assert list(doc["param_encodings"]) == ["fc2.weight"]
    with pytest.raises(ValueError, match="4 layer"):
        export(h, cfg, "aimet", tmp_path / "b.encodings", strict=True)
    assert not (tmp_path / "b.encodings").exists()
