"""The mixed-precision knapsack against brute force on small random instances."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantviz.core.mckp import front, front_by_budgets, solve_exact, solve_greedy

_opt = st.tuples(st.integers(0, 40).map(float), st.integers(0, 30).map(lambda c: c / 4))
_layers = st.lists(st.lists(_opt, min_size=1, max_size=4), min_size=1, max_size=5)


def _all(options):
    for picks in itertools.product(*[range(len(o)) for o in options]):
        r = sum(options[i][j][0] for i, j in enumerate(picks))
        c = sum(options[i][j][1] for i, j in enumerate(picks))
        yield picks, r, c


@settings(max_examples=100, deadline=None)
@given(options=_layers, budget=st.integers(0, 200).map(float))
def test_exact_is_the_brute_force_optimum(options, budget):
    fits = [c for _, r, c in _all(options) if r <= budget]
    got = solve_exact(options, budget)
    if not fits:
        assert got is None
        return
    assert got is not None
    assert got.resource <= budget
    assert got.cost == pytest.approx(min(fits), abs=1e-9)
    # the reported totals are those of the picks
    assert got.resource == sum(options[i][j][0] for i, j in enumerate(got.picks))
    assert got.cost == pytest.approx(sum(options[i][j][1] for i, j in enumerate(got.picks)))


@settings(max_examples=100, deadline=None)
@given(options=_layers, budget=st.integers(0, 200).map(float))
def test_greedy_fits_and_is_never_better_than_exact(options, budget):
    exact, greedy = solve_exact(options, budget), solve_greedy(options, budget)
    assert (exact is None) == (greedy is None)  # greedy reaches the smallest choice too
    if greedy is not None:
        assert greedy.resource <= budget
        assert greedy.cost >= exact.cost - 1e-9


@settings(max_examples=100, deadline=None)
@given(options=_layers)
def test_front_is_exactly_the_non_dominated_set(options):
    pts = {(r, c) for _, r, c in _all(options)}
    nd = sorted(
        (r, c)
        for r, c in pts
        if not any(r2 <= r and c2 <= c and (r2, c2) != (r, c) for r2, c2 in pts)
    )
    f = front(options)
    assert [(p.resource, p.cost) for p in f] == nd  # quarter costs: exact sums
    for p in f:  # each point's picks add up to it
        assert p.resource == sum(options[i][j][0] for i, j in enumerate(p.picks))
    # every point sampled by budgets has the front's cost at its size (among equal-cost
    # optima the ILP may return one with more bytes)
    for q in front_by_budgets(options, 6):
        best = min(p.cost for p in f if p.resource <= q.resource)
        assert q.cost == best


def test_greedy_can_lose_to_exact():
    # greedy takes layer 0's step first (0.1 per byte) and saves 9 bytes more than needed;
    # the optimum lowers layer 1 by the one byte over budget
    options = [[(10.0, 0.0), (0.0, 1.0)], [(10.0, 0.0), (9.0, 0.5)]]
    exact, greedy = solve_exact(options, 19.0), solve_greedy(options, 19.0)
    assert exact.picks == (0, 1) and exact.cost == 0.5
    assert greedy.picks == (1, 0) and greedy.cost == 1.0


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match=r"options\[1\]: a layer needs at least one option"):
        solve_exact([[(1.0, 1.0)], []], 5.0)
    with pytest.raises(ValueError, match="finite"):
        solve_exact([[(1.0, float("nan"))]], 5.0)


@pytest.mark.parametrize("seed", range(6))
def test_exact_matches_a_plain_ilp_on_larger_instances(seed):
    """30 layers x 8 options, where greedy is rarely optimal and the pruning bites: the
    optimum equals that of a plain 0/1 program written here (no pruning, no dominance)."""
    import numpy as np
    from scipy.optimize import LinearConstraint, milp

    rng = np.random.default_rng(seed)
    layers, k = 30, 8
    size = rng.integers(1, 400, (layers, k)).astype(float)
    cost = rng.integers(0, 1000, (layers, k)).astype(float)
    options = [list(zip(size[i], cost[i])) for i in range(layers)]
    budget = float(size.min(1).sum() + 0.3 * (size.max(1).sum() - size.min(1).sum()))
    n = layers * k
    one = np.zeros((layers, n))
    for i in range(layers):
        one[i, i * k : (i + 1) * k] = 1
    cons = [LinearConstraint(one, 1, 1), LinearConstraint(size.reshape(1, n), -np.inf, budget)]
    ref = milp(
        cost.ravel(),
        constraints=cons,
        integrality=np.ones(n),
        bounds=(0, 1),
        options={"mip_rel_gap": 0},
    )
    got = solve_exact(options, budget)
    assert got.resource <= budget
    assert got.cost == round(ref.fun)  # integer costs: the reference is a float sum
