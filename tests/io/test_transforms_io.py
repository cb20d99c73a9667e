"""Config v3 (transforms, rounding): round trip, migration of v1/v2 files, and exports that
carry the transformed weights (checked with safetensors read back and onnxruntime)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.eval import apply_config, run
from quantviz.eval.transforms import prepare_transforms
from quantviz.io.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)

CFG = ModelConfig(
    default=LayerConfig(weight=QuantSpec(bits=4)),
    overrides=(
        ("pw3", LayerConfig(weight=QuantSpec(bits=4, rounding="gptq", gptq_act_order=True))),
    ),
    transforms=("cle", {"smoothquant": {"alpha": 0.75}}, "bias_correction"),
)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_v3_round_trip(tmp_path, suffix):
    p = tmp_path / f"c{suffix}"
    save_config(CFG, p)
    assert load_config(p) == CFG
    doc = config_to_dict(CFG)
    assert doc["version"] == 3
    assert doc["transforms"] == ["cle", {"smoothquant": {"alpha": 0.75}}, "bias_correction"]
    assert doc["layers"]["pw3"] == {"weight": {"rounding": "gptq", "gptq_act_order": True}}


def test_v1_and_v2_files_keep_loading(tmp_path):
    v2 = {"format": "quantviz-config", "version": 2, "default": {"weight": {"bits": 4}}}
    v1 = {"format": "quantviz-config", "version": 1, "default": {"weight": {"bits": 4}}}
    want = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=4)))
    for doc in (v1, v2):
        p = tmp_path / "old.json"
        p.write_text(json.dumps(doc))
        got = load_config(p)
        assert got == want and got.transforms == ()
        save_config(got, p)
        assert json.loads(p.read_text())["version"] == 3
    with pytest.raises(ConfigError, match="transforms: unknown field in version 2"):
        config_from_dict({**v2, "transforms": ["cle"]})


@pytest.mark.parametrize(
    "transforms, path, detail",
    [
        ("cle", "transforms", "must be a list"),
        (["cle", "cle"], "transforms[1]", "cle appears twice"),
        (["nope"], "transforms[0]", "must be one of fold_bn, cle"),
        ([{"smoothquant": {"alpha": 1.5}}], "transforms.smoothquant.alpha", "must be in"),
        ([{"cle": {"iters": 3}}], "transforms.cle.iters", "unknown parameter"),
        ([{"cle": 3}], "transforms[0]", "parameters must be a mapping"),
        ([{"cle": {}, "fold_bn": {}}], "transforms[0]", "exactly one key"),
        (["cle"] * 6, "transforms", "at most 5 entries"),
    ],
)
def test_bad_transforms_name_the_field(transforms, path, detail):
    doc = {"format": "quantviz-config", "version": 3, "transforms": transforms}
    with pytest.raises(ConfigError) as info:
        config_from_dict(doc, source="c.json")
    assert str(info.value).startswith(f"c.json: {path}: ")
    assert detail in str(info.value)


def test_bad_rounding_names_the_field():
    doc = {
        "format": "quantviz-config",
        "version": 3,
        "default": {"weight": {"bits": 4, "quantizer": "kmeans", "rounding": "gptq"}},
    }
    with pytest.raises(ConfigError, match="default.weight.rounding: gptq needs the uniform"):
        config_from_dict(doc)
    doc["default"] = {"weight": {"rounding": "gptq", "gptq_damping": 0}}
    with pytest.raises(ConfigError, match=r"default.weight.gptq_damping: must be in \(0, 1\]"):
        config_from_dict(doc)
    doc["default"] = {"activation": {"rounding": "adaround"}}
    with pytest.raises(ConfigError, match="activation.rounding"):
        config_from_dict(doc)


def _setup():
    from quantviz.data import load_data
    from quantviz.model import load_model

    h = load_model("sample:digits_mobilenet")
    return h, load_data(None, h)


def test_safetensors_and_onnx_exports_carry_the_transformed_weights(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from quantviz.io.exporters import export, load_quantized

    h, data = _setup()
    cfg = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=4)),
        overrides=(("pw3", LayerConfig(weight=QuantSpec(bits=4, rounding="gptq"))),),
        transforms=("cle", "bias_correction"),
    )
    with pytest.raises(ValueError, match="safetensors export: the config has cle"):
        export(h, cfg, "safetensors", tmp_path / "x.safetensors")
    state = run(prepare_transforms(h, cfg, data.calib_x))
    res = export(h, cfg, "safetensors", tmp_path / "m.safetensors", state=state)
    assert res.unsupported == []
    got = load_quantized(tmp_path / "m.safetensors")
    with torch.no_grad(), apply_config(h, cfg, state=state):
        want = {k: v.detach().clone() for k, v in h.module.state_dict().items()}
        y = h.module(data.x[:64])
    for k, v in want.items():  # quantized weights (GPTQ's too) and corrected biases
        assert torch.equal(got[k], v), k
    assert not torch.equal(want["pw1.bias"], h.module.pw1.bias)  # really transformed
    res = export(h, cfg, "onnx", tmp_path / "m.onnx", state=state)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    out = sess.run(None, {"input": data.x[:64].numpy()})[0]
    np.testing.assert_allclose(out, y.numpy(), atol=1e-4 * float(y.abs().max()))


def test_an_inserted_operation_is_named_by_the_weight_formats(tmp_path):
    from quantviz.io.exporters import export

    h, data = _setup()
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=8)), transforms=("smoothquant",))
    state = run(prepare_transforms(h, cfg, data.calib_x))
    res = export(h, cfg, "safetensors", tmp_path / "m.safetensors", state=state)
    assert [f for f, _ in res.unsupported] == ["smoothquant"]
    assert "input scale inserted in front of fc" in res.unsupported[0][1]
    with pytest.raises(ValueError, match="smoothquant: an input scale"):
        export(h, cfg, "safetensors", tmp_path / "s.safetensors", state=state, strict=True)
    assert not (tmp_path / "s.safetensors").exists()
