"""apply_config: weights swapped and restored exactly, activation hooks, the weight cache."""

from __future__ import annotations

import pytest
import torch

from quantviz.core import LayerConfig, ModelConfig, QuantSpec, quantize
from quantviz.data import load_data
from quantviz.eval import WeightCache, apply_config, calibrate, run
from quantviz.model import load_model

W4 = QuantSpec(bits=4, granularity="per_channel")


@pytest.fixture(scope="module")
def handle():
    return load_model("sample:digits_cnn")


@pytest.fixture(scope="module")
def data(handle):
    return load_data(None, handle)


def _snapshot(handle):
    return {n: (p, p.data_ptr(), p.detach().clone()) for n, p in handle.module.named_parameters()}


def _assert_restored(handle, snap, x, ref_out):
    for n, p in handle.module.named_parameters():
        obj, ptr, values = snap[n]
        assert p is obj
        assert p.data_ptr() == ptr
        assert torch.equal(p.detach(), values)
    for m in handle.module.modules():
        assert not m._forward_pre_hooks and not m._forward_hooks
    with torch.no_grad():
        assert torch.equal(handle.module(x), ref_out)  # bit-exact


def test_weights_fake_quantized_inside_and_restored_after(handle, data):
    x = data.x[:64]
    snap = _snapshot(handle)
    with torch.no_grad():
        ref = handle.module(x)
    cfg = ModelConfig(default=LayerConfig(weight=W4))
    with apply_config(handle, cfg) as applied, torch.no_grad():
        for fqn in handle.fqns:
            expected = quantize(snap[f"{fqn}.weight"][2], W4).dequantized
            assert torch.equal(handle.weight(fqn).detach(), expected)
        assert set(applied.weights) == set(handle.fqns)
        out = handle.module(x)
    assert not torch.equal(out, ref)
    _assert_restored(handle, snap, x, ref)


def test_restored_when_the_block_raises(handle, data):
    x = data.x[:16]
    snap = _snapshot(handle)
    with torch.no_grad():
        ref = handle.module(x)
    cfg = ModelConfig(default=LayerConfig(weight=W4, activation=QuantSpec(bits=8, dynamic=True)))
    with pytest.raises(RuntimeError, match="boom"), apply_config(handle, cfg):
        raise RuntimeError("boom")
    _assert_restored(handle, snap, x, ref)


def test_float_layers_untouched_and_nested_apply_refused(handle):
    cfg = ModelConfig(default=LayerConfig(weight=None), overrides={"fc1": LayerConfig(weight=W4)})
    before = handle.weight("conv1").data_ptr()
    with apply_config(handle, cfg) as applied:
        assert set(applied.weights) == {"fc1"}
        assert handle.weight("conv1").data_ptr() == before
        assert handle.weight("fc1").data_ptr() != handle.weight("conv1").data_ptr()
        with pytest.raises(ValueError, match="already applied"), apply_config(handle, cfg):
            pass
    with apply_config(handle, cfg):  # usable again after exit
        pass


def test_unknown_override_key_is_an_error(handle):
    cfg = ModelConfig(overrides={"conv9": LayerConfig(weight=W4)})
    with pytest.raises(ValueError, match="conv9"), apply_config(handle, cfg):
        pass


def test_cache_requantizes_only_the_changed_layer(handle):
    cache = WeightCache()
    cfg = ModelConfig(default=LayerConfig(weight=W4))
    with apply_config(handle, cfg, cache=cache):
        pass
    assert cache.misses == len(handle.fqns)
    with apply_config(handle, cfg.with_override("conv2", LayerConfig(weight=W4.with_(bits=3)))):
        pass  # a fresh private cache: unaffected
    misses = cache.misses
    changed = cfg.with_override("conv2", LayerConfig(weight=W4.with_(bits=3)))
    with apply_config(handle, changed, cache=cache):
        pass
    assert cache.misses == misses + 1
    assert ("conv2", W4.with_(bits=3)) in cache
    entry = cache.peek("fc1", W4)
    assert entry is not None and 10 < entry.sqnr_db < 40 and entry.bits_per_value > 4


def test_cache_notices_a_changed_weight():
    lin = torch.nn.Linear(8, 4)
    cache = WeightCache()
    a = cache.get("lin", W4, lin.weight)
    with torch.no_grad():
        lin.weight.mul_(2)  # bumps the version counter
    b = cache.get("lin", W4, lin.weight)
    assert cache.misses == 2
    assert torch.allclose(b.dequantized, 2 * a.dequantized)


def test_cache_evicts_to_its_byte_bound():
    cache = WeightCache(max_bytes=3 * 64 * 4)
    w = torch.randn(8, 8)
    for b in range(2, 8):
        cache.get("w", W4.with_(bits=b), w)
    assert len(cache) == 3 and cache.nbytes <= 3 * 64 * 4
    assert ("w", W4.with_(bits=7)) in cache and ("w", W4.with_(bits=2)) not in cache


def _layer_inputs(handle, fqn, x):
    seen = []
    mod = dict(handle.module.named_modules())[fqn]
    h = mod.register_forward_hook(lambda _m, args, _o: seen.append(args[0].detach().clone()))
    try:
        with torch.no_grad():
            handle.module(x)
    finally:
        h.remove()
    return seen[0]


def test_static_activation_needs_stats_and_puts_inputs_on_the_grid(handle, data):
    act = QuantSpec(bits=4, symmetric=False)
    cfg = ModelConfig(default=LayerConfig(weight=None, activation=act))
    with pytest.raises(ValueError, match="calibration statistics"), apply_config(handle, cfg):
        pass
    stats = run(calibrate(handle, data, handle.fqns, {}, batch_size=128))
    x = data.x[:32]
    raw = _layer_inputs(handle, "fc1", x)
    with apply_config(handle, cfg, stats=stats) as applied:
        assert set(applied.activations.values()) == {"static"}
        q = _layer_inputs(handle, "fc1", x)
    assert q.unique().numel() <= 2**4 < raw.unique().numel()
    assert (q - raw).abs().max() < (raw.max() - raw.min()) / 8  # close: same range


def test_static_activation_needs_per_tensor(handle, data):
    stats = run(calibrate(handle, data, ["fc1"], {}))
    act = QuantSpec(bits=8, granularity="per_channel")
    cfg = ModelConfig(default=LayerConfig(weight=None), overrides={"fc1": LayerConfig(None, act)})
    with pytest.raises(ValueError, match="fc1.*per_tensor"), apply_config(handle, cfg, stats=stats):
        pass


def test_dynamic_activation_uses_per_batch_ranges(handle, data):
    act = QuantSpec(bits=3, dynamic=True, symmetric=False)
    cfg = ModelConfig(default=LayerConfig(weight=None), overrides={"fc2": LayerConfig(None, act)})
    x = data.x[:8]
    raw = _layer_inputs(handle, "fc2", x)
    with apply_config(handle, cfg) as applied:
        assert applied.activations["fc2"] == "dynamic"
        q = _layer_inputs(handle, "fc2", x)
    assert q.unique().numel() <= 8
    assert torch.isclose(q.max(), raw.max(), rtol=1e-5)  # per-batch min/max range
    assert torch.equal(q, quantize(raw, act).dequantized)


def test_exception_in_preparation_leaves_model_untouched(handle):
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(granularity="per_group", group_size=7)))
    ptrs = {n: p.data_ptr() for n, p in handle.module.named_parameters()}
    with (
        pytest.raises(ValueError, match="layer conv1: weight: .*group_size"),
        apply_config(handle, cfg),
    ):
        pass
    assert ptrs == {n: p.data_ptr() for n, p in handle.module.named_parameters()}
