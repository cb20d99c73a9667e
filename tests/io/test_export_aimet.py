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


@pytest.mark.parametrize(
    "spec",
    [
        QuantSpec(bits=8),
        QuantSpec(bits=8, restricted_range=True),
        QuantSpec(bits=4, symmetric=False),
        QuantSpec(bits=6, granularity="per_channel", symmetric=False),
    ],
    ids=lambda s: s.short(),
)
def test_offset_convention_reproduces_the_grid(spec):
    """AIMET: x = (u + offset) * scale, u in [0, 2^b - 1]; offset = -zero_point (asym)."""
    torch.manual_seed(1)
    w = torch.randn(8, 32) + 0.3
    r = quantize(w, spec)
    entries = encoding_entries(r.fitted.scale, r.fitted.zero_point, spec)
    levels = r.levels if r.levels.dim() == 2 else r.levels[None]
    qmin, qmax = spec.qrange
    for e, lv, zp in zip(entries, levels, r.fitted.zero_point):
        if not spec.symmetric:
            assert e["offset"] == -int(zp)
        else:
            assert e["offset"] == qmin  # -128, or -127 restricted
        u = torch.arange(0, qmax - qmin + 1, dtype=torch.float32)
        assert torch.equal((u + e["offset"]) * e["scale"], lv)
        assert e["min"] == pytest.approx(float(lv[0])) and e["max"] == pytest.approx(float(lv[-1]))


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
