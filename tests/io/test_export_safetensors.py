"""safetensors export: codes, scales, codebooks, manifest; the loader reproduces the weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from test_export_common import SAMPLES, handle_and_data, mixed_config

from quantviz.core import LayerConfig, ModelConfig, QuantSpec, quantize
from quantviz.io.exporters import export, load_quantized
from quantviz.io.exporters.safetensors_fmt import (
    decode_layer,
    encode_layer,
    pack,
    read_manifest,
    sidecar_path,
    unpack,
)

QUANTIZERS = ["uniform", "kmeans", "log2", "nf4", "fp4_e2m1", "fp8_e4m3", "fp8_e5m2"]
GRANULARITIES = ["per_tensor", "per_channel", "per_group"]


def _specs():
    for q in QUANTIZERS:
        for g in GRANULARITIES:
            bits = {"uniform": (2, 4, 8, 12), "kmeans": (2, 4), "log2": (3, 5)}.get(q, (8,))
            for b in bits:
                for sym in (True, False) if q == "uniform" else (True,):
                    yield QuantSpec(
                        bits=b, quantizer=q, granularity=g, group_size=24, symmetric=sym, axis=1
                    )


@pytest.mark.parametrize("spec", list(_specs()), ids=lambda s: s.short())
def test_encode_decode_is_exact_for_every_quantizer(spec):
    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3) * torch.linspace(0.1, 2.0, 16)[:, None, None, None]
    entry, tensors = encode_layer("x", w, spec)
    assert torch.equal(decode_layer(entry, tensors), quantize(w, spec).dequantized)
    bits = entry["codes"]["bits"]
    assert entry["codes"]["packing"] == (
        "uint4x2" if bits <= 4 else "uint8" if bits <= 8 else "int16"
    )
    assert tensors["codes"].dtype == (torch.int16 if bits > 8 else torch.uint8)


@pytest.mark.parametrize("bits", [1, 3, 4, 5, 8, 9, 16])
def test_pack_unpack_round_trip(bits):
    codes = torch.randint(0, 2**bits, (37,), dtype=torch.int64)
    stored = pack(codes, bits)
    packing = "uint4x2" if bits <= 4 else "uint8" if bits <= 8 else "int16"
    assert stored.numel() == (19 if bits <= 4 else 37)
    assert torch.equal(unpack(stored, packing, 37), codes)


@pytest.mark.parametrize("source", SAMPLES)
def test_sample_round_trip(tmp_path, source):
    h, _ = handle_and_data(source)
    cfg = mixed_config(h)
    out = tmp_path / "model.safetensors"
    res = export(h, cfg, "safetensors", out)
    assert res.paths == [out] and res.unsupported == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    back = load_quantized(out)
    state = h.module.state_dict()
    assert set(back) == set(state)
    for lay in h.layers:
        spec = cfg.resolve(lay.fqn).weight
        want = quantize(h.weight(lay.fqn), spec).dequantized
        assert torch.equal(back[lay.param_name], want), lay.fqn
    for name, t in state.items():
        if name not in {lay.param_name for lay in h.layers}:
            assert torch.equal(back[name], t)
    # the manifest lives in the metadata (one file: never from another export)
    with safe_open(str(out), framework="pt") as f:
        meta = json.loads(f.metadata()["manifest"])
    assert meta == read_manifest(out) and meta["format"] == "quantviz-quantized-weights"
    first = meta["layers"][h.layers[0].param_name]
    assert first["spec"]["quantizer"] == "kmeans" and first["codes"]["packing"] == "uint4x2"
    grp = meta["layers"][h.layers[-2].param_name]
    assert grp["granularity"] == "per_group" and grp["group_size"] == 16


def test_float_layers_are_stored_as_floats(tmp_path):
    h, _ = handle_and_data(SAMPLES[0])
    cfg = ModelConfig(
        default=LayerConfig(weight=None), overrides=(("fc1", LayerConfig(QuantSpec(bits=3))),)
    )
    out = tmp_path / "m.safetensors"
    export(h, cfg, "safetensors", out)
    back = load_quantized(out)
    assert torch.equal(back["conv1.weight"], h.weight("conv1"))
    assert not torch.equal(back["fc1.weight"], h.weight("fc1"))
    # 3-bit codes of a 64x512 weight: two per byte
    with safe_open(str(out), framework="pt") as f:
        assert f.get_tensor("fc1.weight:codes").numel() == 64 * 512 // 2


def test_loader_errors_name_the_file(tmp_path):
    bad = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2)}, str(bad))
    with pytest.raises(ValueError, match="plain.safetensors.*not a quantviz export"):
        load_quantized(bad)
    with pytest.raises(ValueError, match="missing.safetensors"):
        load_quantized(tmp_path / "missing.safetensors")


def test_an_earlier_exports_sidecar_is_removed_and_others_kept(tmp_path):
    h, _ = handle_and_data(SAMPLES[0])
    out = tmp_path / "m.safetensors"
    # what an earlier quantviz left: the sidecar of another export
    stale = {"format": "quantviz-quantized-weights", "version": 1, "layers": {}}
    sidecar_path(out).write_text(json.dumps(stale))
    export(h, ModelConfig(), "safetensors", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    # a file of that name that is not one of our manifests is left alone
    other = tmp_path / "n.safetensors"
    sidecar_path(other).write_text('{"mine": true}')
    export(h, ModelConfig(), "safetensors", other)
    assert json.loads(sidecar_path(other).read_text()) == {"mine": True}


def test_a_failed_export_keeps_the_previous_file(tmp_path, monkeypatch):
    h, _ = handle_and_data(SAMPLES[0])
    out = tmp_path / "m.safetensors"
    export(h, ModelConfig(), "safetensors", out)
    before = out.read_bytes()
    monkeypatch.setattr(
        "quantviz.io.atomic.os.replace", lambda s, d: (_ for _ in ()).throw(OSError(5, "EIO"))
    )
    with pytest.raises(ValueError, match=r"m\.safetensors: cannot write"):
        export(h, ModelConfig(default=LayerConfig(QuantSpec(bits=3))), "safetensors", out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_manifest_that_is_not_json_is_a_message(tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    save_file(
        {"a": torch.zeros(2)},
        str(bad),
        metadata={"format": "quantviz-quantized-weights", "manifest": "[" * 100_000},
    )
    with pytest.raises(ValueError, match=r"bad\.safetensors: manifest: invalid JSON"):
        load_quantized(bad)
