"""evaluate(): a stoppable generator returning an EvalResult; baseline and stats reuse."""

from __future__ import annotations

import json

import pytest
import torch

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.data import EvalData, load_data
from quantviz.eval import (
    EvalResult,
    Progress,
    WeightCache,
    check_device,
    compute_baseline,
    evaluate,
    run,
)
from quantviz.eval.results import STAGES
from quantviz.model import load_model

W8 = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=8, granularity="per_channel")))
W8A8 = ModelConfig(
    default=LayerConfig(
        weight=QuantSpec(bits=8, granularity="per_channel"),
        activation=QuantSpec(bits=8, symmetric=False),
    )
)
FLOAT = ModelConfig(default=LayerConfig(weight=None))


@pytest.fixture(scope="module")
def handle():
    return load_model("sample:digits_cnn")


@pytest.fixture(scope="module")
def data(handle):
    return load_data(None, handle)


@pytest.fixture(scope="module")
def unlabelled(data):
    return EvalData(name="nolabels", x=data.x[:100], y=None, calib_x=data.calib_x[:64])


def _collect(gen):
    events = []
    result = run(gen, events.append)
    return events, result


def test_w8_result_document(handle, data):
    events, r = _collect(evaluate(handle, data, W8, batch_size=128, name="w8"))
    assert isinstance(r, EvalResult)
    assert r.metric == "accuracy" and r.name == "w8"
    assert r.baseline >= 0.97 and abs(r.value - r.baseline) <= 0.01
    assert r.n_samples == len(data)
    assert r.float_bytes == handle.float_bytes
    assert 3.5 < r.compression < 4 and r.model_bytes * r.compression == pytest.approx(r.float_bytes)
    assert r.bops * 4 == r.float_bops  # 8-bit weights, float activations: 8*32 vs 32*32
    assert [lay["fqn"] for lay in r.layers] == handle.fqns
    assert all(lay["weight_sqnr_db"] > 35 for lay in r.layers)
    assert r.top1_agreement > 0.98 and r.cosine > 0.999 and 0 <= r.kl < 1e-3
    doc = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    for key in (
        "metric",
        "value",
        "baseline",
        "model_bytes",
        "float_bytes",
        "compression",
        "bops",
        "layers",
        "seconds",
        "timings",
        "cosine",
        "kl",
        "name",
    ):
        assert key in doc
    # the config stays an object on the result; files write it in their own format
    assert "config" not in doc and r.config is W8
    assert set(doc["timings"]) == set(STAGES)
    assert sum(doc["timings"].values()) == pytest.approx(doc["seconds"], rel=0.01)
    # progress: baseline batches, per-layer quantization, forward batches, in that order
    stages = [e.stage for e in events]
    assert stages == ["baseline"] * 3 + ["quantize"] * 4 + ["forward"] * 3
    assert all(isinstance(e, Progress) and 1 <= e.done <= e.total for e in events)
    assert events[-1].done == events[-1].total and events[-1].fraction == 1.0


def test_float_config_matches_baseline_and_kl_is_zero(handle, unlabelled):
    r = run(evaluate(handle, unlabelled, FLOAT))
    assert r.metric == "top1_agreement"
    assert r.value == 1.0 == r.baseline
    assert r.kl == pytest.approx(0, abs=1e-9) and r.cosine == pytest.approx(1)
    assert r.compression == 1.0
    assert all(lay["weight_sqnr_db"] is None for lay in r.layers)


def test_fidelity_metrics_without_labels(handle, unlabelled):
    r = run(evaluate(handle, unlabelled, ModelConfig(default=LayerConfig(QuantSpec(bits=2)))))
    assert r.metric == "top1_agreement" and r.value == r.top1_agreement
    assert r.value < 1 and r.kl > 0.01 and r.cosine < 0.999
    assert r.to_dict()["metric"] == "top1_agreement"


def test_baseline_is_reused(handle, data):
    base = run(compute_baseline(handle, data, batch_size=200))
    events, r = _collect(evaluate(handle, data, W8, baseline=base))
    assert "baseline" not in {e.stage for e in events}
    assert r.timings["baseline"] == 0.0 and r.baseline == base.value
    # a baseline of other data is not reused
    other = EvalData("other", data.x[:50].clone(), data.y[:50], data.calib_x)
    events, r2 = _collect(evaluate(handle, other, W8, baseline=base))
    assert "baseline" in {e.stage for e in events} and r2.n_samples == 50


def test_calibration_only_when_needed_and_cached(handle, data):
    stats: dict = {}
    events, _ = _collect(evaluate(handle, data, W8, stats=stats))
    assert stats == {} and "calibrate" not in {e.stage for e in events}
    events, r = _collect(evaluate(handle, data, W8A8, stats=stats))
    assert set(stats) == set(handle.fqns) and "calibrate" in {e.stage for e in events}
    assert r.timings["calibrate"] > 0 and r.bops * 16 == r.float_bops
    assert abs(r.value - r.baseline) <= 0.02
    first = stats["fc1"]
    events, r2 = _collect(evaluate(handle, data, W8A8, stats=stats))
    assert "calibrate" not in {e.stage for e in events} and stats["fc1"] is first
    assert r2.value == r.value  # deterministic


def test_cache_shared_between_evaluations(handle, data):
    cache = WeightCache()
    run(evaluate(handle, data, W8, cache=cache))
    misses = cache.misses
    changed = W8.with_override("fc2", LayerConfig(weight=QuantSpec(bits=3)))
    run(evaluate(handle, data, changed, cache=cache))
    assert cache.misses == misses + 1


def test_a_model_larger_than_the_cache_is_streamed(handle, data):
    """With no room in the cache the pass is streamed: every batch quantizes each layer's
    weight while its module runs, nothing is kept; the numbers are those of the up-front
    path (which quantizes each layer once and keeps them all in a cache that fits)."""
    cache = WeightCache(max_bytes=0)
    events, r = _collect(evaluate(handle, data, W8, cache=cache, batch_size=128))
    n_batches = -(-len(data) // 128)
    assert n_batches > 1
    assert cache.misses == n_batches * len(handle.fqns) and cache.hits == 0
    assert len(cache) == 0  # nothing kept
    assert "quantize" not in {e.stage for e in events}  # it happens inside the pass
    big = WeightCache()
    events, r_big = _collect(evaluate(handle, data, W8, cache=big, batch_size=128))
    assert big.misses == len(handle.fqns) and len(big) == len(handle.fqns)
    assert [e.stage for e in events].count("quantize") == len(handle.fqns)
    assert r.value == r_big.value and r.kl == r_big.kl
    assert [lay["weight_sqnr_db"] for lay in r.layers] == [
        lay["weight_sqnr_db"] for lay in r_big.layers
    ]
    assert all(isinstance(lay["weight_sqnr_db"], float) for lay in r.layers)
    assert r.timings["quantize"] > 0
    assert sum(r.timings.values()) == pytest.approx(r.seconds, rel=0.01)


def test_stop_at_any_yield_restores_the_float_model(handle, data):
    x = data.x[:32]
    with torch.no_grad():
        ref = handle.module(x)
    ptrs = {n: p.data_ptr() for n, p in handle.module.named_parameters()}
    gen = evaluate(handle, data, W8A8, batch_size=64, stats={})
    for ev in gen:
        if ev.stage == "forward":  # inside apply_config
            assert handle.weight("fc1").data_ptr() != ptrs["fc1.weight"]
            break
    gen.close()
    assert ptrs == {n: p.data_ptr() for n, p in handle.module.named_parameters()}
    assert all(not m._forward_pre_hooks for m in handle.module.modules())
    with torch.no_grad():
        assert torch.equal(handle.module(x), ref)
    # stopping during calibration leaves no partial statistics
    stats: dict = {}
    gen = evaluate(handle, data, W8A8, batch_size=64, stats=stats)
    for ev in gen:
        if ev.stage == "calibrate":
            break
    gen.close()
    assert stats == {}
    assert all(not m._forward_hooks for m in handle.module.modules())


def test_bad_input(handle, data):
    with pytest.raises(ValueError, match="batch_size"):
        run(evaluate(handle, data, W8, batch_size=0))
    with pytest.raises(ValueError, match="fc9"):
        run(evaluate(handle, data, W8.with_override("fc9", LayerConfig())))
    with pytest.raises(ValueError, match="CUDA is not available on this machine"):
        if torch.cuda.is_available():  # pragma: no cover - no GPU on CI
            raise ValueError("CUDA is not available on this machine")
        check_device("cuda")
    with pytest.raises(ValueError, match="cpu or cuda"):
        check_device("tpu")
    assert check_device("cpu").type == "cpu"


def test_config_that_cannot_apply_is_refused_before_any_pass(handle, data):
    """per_group 128 on conv1 (rows of 9) fails at the first step, naming the layer."""
    g128 = ModelConfig(default=LayerConfig(weight=QuantSpec(granularity="per_group")))
    gen = evaluate(handle, data, g128)
    with pytest.raises(ValueError, match="layer conv1: weight: group_size: 128 does not divide"):
        next(gen)  # no Progress event: nothing ran
    # a layer-specific override that fits its layer is accepted, the rest is checked per layer
    ok = ModelConfig(
        default=LayerConfig(weight=QuantSpec(granularity="per_group", group_size=16)),
        overrides=(
            ("conv1", LayerConfig(weight=QuantSpec(granularity="per_group", group_size=9))),
        ),
    )
    run(evaluate(handle, data, ok))
    static_ch = ModelConfig(
        default=LayerConfig(weight=None, activation=QuantSpec(granularity="per_channel"))
    )
    with pytest.raises(ValueError, match="layer conv1: activation: static quantization"):
        next(evaluate(handle, data, static_ch))


def test_result_round_trip_without_config(handle, data):
    from quantviz.io.session_file import eval_result_from_dict

    r = run(evaluate(handle, data, W8, name="w8"))
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    back = eval_result_from_dict(d)
    assert back.config is None and back.to_dict() == d
    # documents written when the result held the config as a dict still load
    old = {**d, "config": {"default": {"weight": {"bits": 8}}}}
    assert eval_result_from_dict(old).config is None


def test_eval_does_not_import_io():
    """Serialising the config is quantviz.io's job: evaluating never imports it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from quantviz.data import load_data\n"
        "from quantviz.eval import evaluate, run\n"
        "from quantviz.model import load_model\n"
        "from quantviz.core.defaults import DEFAULT_CONFIG\n"
        "h = load_model('sample:digits_cnn')\n"
        "r = run(evaluate(h, load_data(None, h), DEFAULT_CONFIG))\n"
        "assert r.config is DEFAULT_CONFIG\n"
        "bad = sorted(m for m in sys.modules if m.startswith('quantviz.io'))\n"
        "assert not bad, bad\n"
    )
    import os
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=env)
