"""Calibration statistics cached by content: a repeated sweep skips calibration."""

from __future__ import annotations

import copy

import pytest
import torch

from quantviz.core import QuantSpec
from quantviz.data import load_data, load_model_for_data
from quantviz.eval import Progress, run, uniform_sweep
from quantviz.eval.stats_cache import STATS_CACHE, StatsCache, model_digest, tensor_digest

STATIC = QuantSpec(bits=8, symmetric=False)  # static: calibrated once


@pytest.fixture(scope="module")
def model():
    handle = load_model_for_data("sample:digits_cnn", None)
    return handle, load_data(None, handle)


def _calibrations(events):
    return [e for e in events if isinstance(e, Progress) and e.stage == "calibrate"]


def test_repeated_sweep_skips_calibration_with_the_same_results(model):
    handle, data = model
    STATS_CACHE.clear()
    first, second = [], []
    a = run(uniform_sweep(handle, data, (4, 8), activation=STATIC), first.append)
    b = run(uniform_sweep(handle, data, (4, 8), activation=STATIC), second.append)
    assert _calibrations(first) and not _calibrations(second)
    assert [p.value for p in a.points] == [p.value for p in b.points]
    assert [p.kl for p in a.points] == [p.kl for p in b.points]
    # the first layer's input is the calibration data itself: its range, by plain torch
    stats = STATS_CACHE.stats_for(handle, data, 256)
    first_layer = stats[handle.fqns[0]].input
    assert first_layer.min == pytest.approx(float(data.calib_x.min()))
    assert first_layer.max == pytest.approx(float(data.calib_x.max()))
    # a weight-only sweep needs no statistics and adds no entry
    n = len(STATS_CACHE)
    run(uniform_sweep(handle, data, (4,)))
    assert len(STATS_CACHE) == n


def test_key_is_the_content_not_the_object(model):
    handle, data = model
    twin = copy.deepcopy(handle)
    assert model_digest(twin.module) == model_digest(handle.module)
    assert StatsCache.key(twin, data, 256) == StatsCache.key(handle, data, 256)
    changed = copy.deepcopy(handle)
    with torch.no_grad():
        changed.weight(changed.fqns[0])[0, 0, 0, 0] += 1.0
    assert model_digest(changed.module) != model_digest(handle.module)
    assert StatsCache.key(handle, data, 128) != StatsCache.key(handle, data, 256)
    assert tensor_digest(data.calib_x) != tensor_digest(data.calib_x[1:])


def test_cache_is_bounded_least_recently_used_first_out():
    cache = StatsCache(max_entries=2)
    a, b = cache.entry("a"), cache.entry("b")
    a["x"] = "stats"
    assert cache.entry("a") is a  # the same dict: what calibration filled stays
    cache.entry("c")  # evicts b, the least recently used
    assert "a" in cache and "c" in cache and "b" not in cache and len(cache) == 2
    assert cache.entry("b") is not b
    with pytest.raises(ValueError, match="max_entries"):
        StatsCache(0)
