"""pareto(): the non-dominated subset (max value, min bytes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantviz.eval import pareto


def P(value, size):
    return {"value": value, "model_bytes": size}


def test_small_example():
    pts = [P(0.9, 100), P(0.8, 50), P(0.85, 120), P(0.95, 200), P(0.7, 60), P(0.95, 300)]
    assert pareto(pts) == [P(0.8, 50), P(0.9, 100), P(0.95, 200)]


def test_duplicates_and_ties():
    a, b = P(0.9, 100), P(0.9, 100)
    assert pareto([a, b]) == [a] and pareto([a, b])[0] is a
    assert pareto([P(0.8, 100), P(0.9, 100)]) == [P(0.9, 100)]  # same size, better value
    assert pareto([P(0.9, 80), P(0.9, 100)]) == [P(0.9, 80)]  # same value, smaller
    assert pareto([]) == []


def test_objects_with_attributes():
    class R:
        def __init__(self, v, b):
            self.value, self.model_bytes = v, b

    rs = [R(0.5, 10), R(0.4, 20)]
    assert pareto(rs) == [rs[0]]


def test_bad_points():
    with pytest.raises(ValueError, match="model_bytes"):
        pareto([{"value": 1.0}])
    with pytest.raises(ValueError, match="non-finite"):
        pareto([P(float("nan"), 1)])


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 20)), max_size=30))
def test_front_is_exactly_the_non_dominated_set(raw):
    pts = [P(v / 20, s) for v, s in raw]
    front = pareto(pts)

    def dominated(p):
        return any(
            q["value"] >= p["value"]
            and q["model_bytes"] <= p["model_bytes"]
            and (q["value"] > p["value"] or q["model_bytes"] < p["model_bytes"])
            for q in pts
        )

    assert all(not dominated(p) for p in front)
    assert {(p["value"], p["model_bytes"]) for p in pts if not dominated(p)} == {
        (p["value"], p["model_bytes"]) for p in front
    }
    sizes = [p["model_bytes"] for p in front]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


def L(value, size):
    """A perplexity point: lower is better."""
    return {"value": value, "model_bytes": size, "metric": "perplexity", "higher_is_better": False}


def test_lower_is_better_front():
    pts = [L(30.0, 100), L(45.0, 50), L(35.0, 120), L(28.0, 200), L(60.0, 60), L(28.0, 300)]
    assert pareto(pts) == [L(45.0, 50), L(30.0, 100), L(28.0, 200)]
    # the same numbers read as accuracy keep a different front
    assert pareto(pts, higher_is_better=True) == [L(45.0, 50), L(60.0, 60)]
    # the direction also comes from the metric name alone
    named = [{"value": v, "model_bytes": s, "metric": "perplexity"} for v, s in [(9, 2), (5, 3)]]
    assert pareto(named) == named
    with pytest.raises(ValueError, match="mix"):
        pareto([P(0.9, 1), L(20.0, 2)])


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 20)), max_size=30))
def test_lower_is_better_front_is_the_non_dominated_set(raw):
    pts = [L(1 + v, s) for v, s in raw]
    front = pareto(pts)

    def dominated(p):
        return any(
            q["value"] <= p["value"]
            and q["model_bytes"] <= p["model_bytes"]
            and (q["value"] < p["value"] or q["model_bytes"] < p["model_bytes"])
            for q in pts
        )

    assert {(p["value"], p["model_bytes"]) for p in pts if not dominated(p)} == {
        (p["value"], p["model_bytes"]) for p in front
    }
    values = [p["value"] for p in front]
    assert values == sorted(values, reverse=True)  # bigger models, lower perplexity
