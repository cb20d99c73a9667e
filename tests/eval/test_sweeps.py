"""Uniform sweep, per-layer sensitivity, greedy mixed precision."""

from __future__ import annotations

import json

import pytest

from quantviz.core import QuantSpec
from quantviz.data import load_data
from quantviz.eval import (
    PointDone,
    Progress,
    WeightCache,
    compute_baseline,
    mixed_precision,
    run,
    sensitivity,
    uniform_sweep,
)
from quantviz.eval.sweeps import greedy_allocation, greedy_path, parse_bits
from quantviz.model import load_model


@pytest.fixture(scope="module")
def handle():
    return load_model("sample:digits_mobilenet")


@pytest.fixture(scope="module")
def data(handle):
    return load_data(None, handle)


@pytest.fixture(scope="module")
def baseline(handle, data):
    return run(compute_baseline(handle, data))


def test_uniform_sweep_grows_point_by_point(handle, data):
    events = []
    res = run(uniform_sweep(handle, data, bits=(2, 4, 8)), events.append)
    done = [e for e in events if isinstance(e, PointDone)]
    assert [d.index for d in done] == [0, 1, 2] and [d.result for d in done] == res.points
    assert all(isinstance(e, (Progress, PointDone)) for e in events)
    sizes = [p.model_bytes for p in res.points]
    assert sizes == sorted(sizes)
    assert res.points[0].value < 0.5 < res.points[2].value  # 2 bits breaks it, 8 does not
    assert res.points[2].value >= res.baseline - 0.01
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert len(doc["points"]) == 3 and doc["pareto"] and doc["kind"] == "uniform"
    # per-channel beats per-tensor at 4 bits on the depthwise sample
    pt = run(uniform_sweep(handle, data, bits=4, base_spec=QuantSpec()))
    assert res.points[1].value > pt.points[0].value


def test_sensitivity_ranks_layers(handle, data, baseline):
    events = []
    res = run(sensitivity(handle, data, bits=3, baseline=baseline), events.append)
    assert sum(isinstance(e, PointDone) for e in events) == len(handle.fqns)
    assert sorted(res.by_drop()) == sorted(handle.fqns) == sorted(res.by_kl())
    kls = [res.layer(f).kl[3] for f in res.by_kl()]
    assert kls == sorted(kls, reverse=True) and kls[0] > 0
    drops = [res.drop(f) for f in res.by_drop()]
    assert drops == sorted(drops, reverse=True)
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert {lay["rank_by_drop"] for lay in doc["layers"]} == set(range(1, len(handle.fqns) + 1))
    # extending with another width only measures the new one
    events = []
    more = run(
        sensitivity(handle, data, bits=(3, 4), baseline=baseline, previous=res), events.append
    )
    assert sum(isinstance(e, PointDone) for e in events) == len(handle.fqns)
    assert all(set(ls.kl) == {3, 4} for ls in more.layers)


def test_greedy_path_lowers_the_cheapest_layer_first():
    sizes = {"a": {2: 1.0, 4: 2.0, 8: 4.0}, "b": {2: 10.0, 4: 20.0, 8: 40.0}}
    kl = {"a": {2: 1.0, 4: 0.1, 8: 0.0}, "b": {2: 1.0, 4: 0.1, 8: 0.0}}
    path = greedy_path(sizes, kl, (2, 4, 8))
    assert path[0] == ({"a": 8, "b": 8}, 44.0)
    assert path[1][0] == {"a": 8, "b": 4}  # same KL increase, 10x the bytes saved
    assert path[-1] == ({"a": 2, "b": 2}, 11.0)
    assert [s for _, s in path] == sorted((s for _, s in path), reverse=True)
    assert greedy_allocation(sizes, kl, (2, 4, 8), 30.0) == {"a": 8, "b": 4}
    assert greedy_allocation(sizes, kl, (2, 4, 8), 5.0) is None


def test_mixed_precision_fits_budgets_and_beats_uniform(handle, data, baseline):
    cache = WeightCache()
    sens = run(sensitivity(handle, data, bits=(2, 4, 8), baseline=baseline, cache=cache))
    uni = run(uniform_sweep(handle, data, bits=(3,), baseline=baseline, cache=cache))
    budget = uni.points[0].model_bytes
    events = []
    res = run(
        mixed_precision(
            handle,
            data,
            sens,
            budgets=[budget, 100.0],
            candidate_bits=(2, 4, 8),
            baseline=baseline,
            cache=cache,
        ),
        events.append,
    )
    assert res.infeasible == [100.0] and len(res.points) == 1
    assert not any(isinstance(e, Progress) and "baseline" in e.stage for e in events)
    p = res.points[0]
    assert p.model_bytes <= budget
    assert p.value > uni.points[0].value  # the allocation beats uniform 3-bit at its size
    assert len(set(res.allocations[0].values())) > 1
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert doc["points"][0]["allocation"] == res.allocations[0]
    # default budgets: six, all feasible, sizes non-decreasing
    res2 = run(mixed_precision(handle, data, sens, candidate_bits=(2, 4, 8), baseline=baseline))
    assert len(res2.points) == 6 and not res2.infeasible
    sizes = [q.model_bytes for q in res2.points]
    assert sizes == sorted(sizes)


def test_parse_bits_and_bad_specs(handle, data):
    assert parse_bits("2, 3,4") == (2, 3, 4) and parse_bits(4) == (4,)
    for bad in ("", "2,,3", "2,x", "0", "17", "4,4", []):
        with pytest.raises(ValueError, match="bits"):
            parse_bits(bad)
    with pytest.raises(ValueError, match="fixed width"):
        run(uniform_sweep(handle, data, base_spec=QuantSpec(quantizer="nf4")))
    with pytest.raises(ValueError, match="layers"):
        run(sensitivity(handle, data, layers=["nope"]))
