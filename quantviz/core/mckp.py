"""The multiple-choice knapsack of mixed precision: one option per layer, least total cost
under a resource budget. Pure numpy/scipy (no torch).

Each layer ``i`` has options ``j`` with a resource ``w[i][j]`` (bytes or BOPs) and a cost
``c[i][j]`` (a sensitivity proxy). :func:`solve_exact` minimises ``sum c`` subject to
``sum w <= budget`` exactly, as a 0/1 integer program solved by HiGHS through
:func:`scipy.optimize.milp` (relative and absolute MIP gaps 0, so the optimum is proven, not
approximated; the chosen resource is re-checked in float64 and the ILP re-run with a tighter
right-hand side if the solver's feasibility tolerance let it exceed the budget).
Options dominated within their layer (no less resource and no less cost than another) are
dropped first, then the options a Lagrangian bound proves no optimum can use (reduced-cost
fixing against the greedy solution's cost): neither changes the optimum, and the program
HiGHS sees shrinks to a few options per layer.

:func:`solve_greedy` is the classic fast heuristic (convex-hull steps by least cost per
unit of resource saved); :func:`front` traces the Pareto front of total cost against total
resource, exactly, by dynamic programming over the layers (merging and pruning the
non-dominated partial sums), with :func:`front_by_budgets` as the ILP alternative for
instances whose exact front is too large.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Choice",
    "Solution",
    "front",
    "front_by_budgets",
    "solve",
    "solve_exact",
    "solve_greedy",
]

#: Options are given per layer as a sequence of (resource, cost) pairs.
Options = Sequence[Sequence[tuple[float, float]]]


@dataclass(frozen=True)
class Choice:
    """Option index per layer, with their total resource and cost."""

    picks: tuple[int, ...]
    resource: float
    cost: float


Solution = Choice | None


def _check(options: Options) -> list[np.ndarray]:
    out = []
    if len(options) == 0:
        raise ValueError("options: no layers to choose for")
    for i, opts in enumerate(options):
        a = np.asarray(opts, dtype=np.float64).reshape(-1, 2)
        if a.shape[0] == 0:
            raise ValueError(f"options[{i}]: a layer needs at least one option")
        if not np.isfinite(a).all():
            raise ValueError(f"options[{i}]: resources and costs must be finite")
        if (a[:, 0] < 0).any():
            raise ValueError(f"options[{i}]: resources must be >= 0")
        out.append(a)
    return out


def _undominated(a: np.ndarray) -> np.ndarray:
    """Indices of the options no other option beats (resource and cost both <=, one <).
    Among exact duplicates the first is kept."""
    order = np.lexsort((np.arange(a.shape[0]), a[:, 1], a[:, 0]))  # resource, cost, index
    keep = []
    best = np.inf
    for k in order:
        if a[k, 1] < best:
            keep.append(int(k))
            best = a[k, 1]
    return np.array(keep, dtype=np.int64)


def _choice(arrs: list[np.ndarray], picks: Sequence[int]) -> Choice:
    res = float(sum(arrs[i][j, 0] for i, j in enumerate(picks)))
    cost = float(sum(arrs[i][j, 1] for i, j in enumerate(picks)))
    return Choice(tuple(int(j) for j in picks), res, cost)


_FD_LOCK = threading.Lock()


def _flush_c_stdio() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # pragma: no cover - no C library to flush
        pass


@contextlib.contextmanager
def _c_stdout_to_stderr() -> Iterator[None]:
    """HiGHS prints some diagnostics with C ``printf`` whatever ``disp`` says; send file
    descriptor 1 to 2 meanwhile, so a ``--json`` document on stdout stays clean."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no real stdout: nothing to protect
        yield
        return
    with _FD_LOCK:
        try:
            os.dup2(2, 1)
            yield
        finally:
            _flush_c_stdio()
            os.dup2(saved, 1)
            os.close(saved)


def _lagrangian_prune(
    arrs: list[np.ndarray], keep: list[np.ndarray], budget: float, upper: float
) -> list[np.ndarray]:
    """The options of ``keep`` that an optimal choice may still use.

    For any ``lam >= 0``, ``L(lam) = sum_i min_j (c_ij + lam s_ij) - lam B`` is a lower
    bound of the optimum, and forcing layer ``i`` to option ``j`` raises it by that
    option's reduced cost ``c_ij + lam s_ij - min_k (c_ik + lam s_ik)``. Where the raised
    bound exceeds ``upper`` (the cost of a feasible choice, the greedy one) no optimum
    picks ``j``. ``lam`` is the best of the slopes between neighbouring options (the
    bound is concave in ``lam``, so a binary search over the sorted slopes finds it).
    """
    sizes = [a[k, 0] for a, k in zip(arrs, keep)]
    costs = [a[k, 1] for a, k in zip(arrs, keep)]
    s_all, c_all = np.concatenate(sizes), np.concatenate(costs)
    counts = np.array([k.size for k in keep])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slopes = [0.0]
    for sz, cs in zip(sizes, costs):  # ascending size, descending cost
        if sz.size > 1:
            d = np.diff(sz)
            slopes.extend((-np.diff(cs)[d > 0] / d[d > 0]).tolist())
    lams = np.unique(np.asarray(slopes, dtype=np.float64))

    def bound(lam: float) -> tuple[float, np.ndarray, np.ndarray]:
        v = c_all + lam * s_all
        mins = np.minimum.reduceat(v, starts)
        return float(mins.sum() - lam * budget), v, mins

    lo, hi = 0, lams.size - 1
    while lo < hi:  # the first index where the bound stops rising
        mid = (lo + hi) // 2
        if bound(float(lams[mid]))[0] < bound(float(lams[mid + 1]))[0]:
            lo = mid + 1
        else:
            hi = mid
    lam = float(lams[lo])
    value, v, mins = bound(lam)
    reduced = v - np.repeat(mins, counts)
    tol = 1e-9 * (abs(upper) + abs(value) + lam * budget + float(np.abs(c_all).sum()) + 1.0)
    ok = value + reduced <= upper + tol
    out = []
    for i, k in enumerate(keep):
        mask = ok[starts[i] : starts[i] + counts[i]]
        out.append(k[mask] if mask.any() else k)
    return out


def solve_exact(options: Options, budget: float, *, time_limit: float = 60.0) -> Solution:
    """The least-cost choice with total resource ``<= budget`` (``None`` if none fits).

    Raises ``RuntimeError`` if HiGHS stops without proving optimality (time limit).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_array

    arrs = _check(options)
    if sum(float(a[:, 0].min()) for a in arrs) > budget:
        return None
    keep = [_undominated(a) for a in arrs]
    greedy = solve_greedy(options, budget)
    if greedy is not None:  # drop the options no optimum can use (a Lagrangian bound)
        keep = _lagrangian_prune(arrs, keep, float(budget), greedy.cost)
    sizes = np.concatenate([a[k, 0] for a, k in zip(arrs, keep)])
    costs = np.concatenate([a[k, 1] for a, k in zip(arrs, keep)])
    counts = np.array([k.size for k in keep])
    group = np.repeat(np.arange(len(arrs)), counts)
    n, m = sizes.size, len(arrs)
    # one option per layer (rows 0..m-1), then the budget row (scaled to O(1))
    scale = max(float(budget), float(sizes.max()), 1.0)
    rows = np.concatenate([group, np.full(n, m)])
    cols = np.concatenate([np.arange(n), np.arange(n)])
    vals = np.concatenate([np.ones(n), sizes / scale])
    a_mat = csr_array((vals, (rows, cols)), shape=(m + 1, n))
    # the costs shifted to >= 0 per layer (a constant): better conditioned, same optimum
    shift = np.repeat(np.array([float(a[k, 1].min()) for a, k in zip(arrs, keep)]), counts)
    c = costs - shift
    rhs = float(budget)
    for _ in range(20):
        lo = np.concatenate([np.ones(m), [-np.inf]])
        hi = np.concatenate([np.ones(m), [rhs / scale]])
        with _c_stdout_to_stderr():
            res = milp(
                c,
                constraints=LinearConstraint(a_mat, lo, hi),
                integrality=np.ones(n),
                bounds=Bounds(0, 1),
                options={"mip_rel_gap": 0.0, "time_limit": time_limit, "presolve": True},
            )
        if res.status == 2:  # infeasible (only possible after tightening)
            return None
        if res.status != 0 or res.x is None:
            raise RuntimeError(f"the ILP solver stopped without an optimum: {res.message}")
        x = res.x > 0.5
        picks = []
        start = 0
        for i, cnt in enumerate(counts):
            local = int(np.flatnonzero(x[start : start + cnt])[0])
            picks.append(int(keep[i][local]))
            start += cnt
        ch = _choice(arrs, picks)
        if ch.resource <= budget:
            return ch
        rhs -= (ch.resource - budget) + 1e-9 * scale  # tolerance overshoot: tighten, re-solve
    raise RuntimeError("the ILP solver kept exceeding the budget by its feasibility tolerance")


def solve_greedy(options: Options, budget: float) -> Solution:
    """The greedy heuristic: every layer at its cheapest option, then, while over budget,
    the step along some layer's lower convex hull with the least cost added per unit of
    resource saved (ties: more resource saved, then layer order). Not optimal in general.
    """
    arrs = _check(options)
    hulls = []
    for a in arrs:
        k = _undominated(a)[::-1]  # descending resource, ascending... cost rises as size falls
        pts = [int(k[0])]
        for j in k[1:]:
            pts.append(int(j))
            # keep the lower convex hull in (resource descending) order
            while len(pts) >= 3:
                p0, p1, p2 = (a[pts[-3]], a[pts[-2]], a[pts[-1]])
                s01 = (p1[1] - p0[1]) / max(p0[0] - p1[0], 1e-300)
                s02 = (p2[1] - p0[1]) / max(p0[0] - p2[0], 1e-300)
                if s02 <= s01:
                    del pts[-2]
                else:
                    break
        hulls.append(pts)
    picks = [h[0] for h in hulls]
    total = sum(float(arrs[i][picks[i], 0]) for i in range(len(arrs)))
    if total <= budget:
        return _choice(arrs, picks)
    # every hull step; each layer's slopes rise along its hull, so sorting all steps by
    # (slope, -saved, layer) takes them in the greedy's order
    lay, nxt, ratio, saved = [], [], [], []
    for i, h in enumerate(hulls):
        for q in range(1, len(h)):
            cur, new = arrs[i][h[q - 1]], arrs[i][h[q]]
            d = float(cur[0] - new[0])
            lay.append(i)
            nxt.append(h[q])
            saved.append(d)
            ratio.append((new[1] - cur[1]) / d if d > 0 else np.inf)
    if not lay:
        return None
    order = np.lexsort((np.array(lay), -np.array(saved), np.array(ratio)))
    cum = total - np.cumsum(np.array(saved)[order])
    hit = np.flatnonzero(cum <= budget)
    if hit.size == 0:
        return None
    for k in order[: hit[0] + 1]:
        picks[lay[k]] = nxt[k]
    return _choice(arrs, picks)


def solve(options: Options, budget: float, solver: str = "exact") -> Solution:
    """:func:`solve_exact` (``"exact"``) or :func:`solve_greedy` (``"greedy"``)."""
    if solver == "exact":
        return solve_exact(options, budget)
    if solver == "greedy":
        return solve_greedy(options, budget)
    raise ValueError(f"solver: must be exact or greedy, got {solver!r}")


def front(options: Options, *, max_points: int = 200_000) -> list[Choice]:
    """The exact Pareto front (total resource ascending, total cost strictly descending).

    Dynamic programming over the layers: the non-dominated (resource, cost) partial sums of
    the first ``i`` layers, extended by each option of layer ``i + 1`` and pruned again.
    Raises ``ValueError`` when a partial front grows past ``max_points`` (use
    :func:`front_by_budgets` then).
    """
    arrs = _check(options)
    res = np.zeros(1)
    cost = np.zeros(1)
    back: list[tuple[np.ndarray, np.ndarray]] = []  # per layer: (parent index, option)
    for i, a in enumerate(arrs):
        k = _undominated(a)
        r = (res[:, None] + a[k, 0][None, :]).ravel()
        c = (cost[:, None] + a[k, 1][None, :]).ravel()
        parent = np.repeat(np.arange(res.size), k.size)
        opt = np.tile(k, res.size)
        order = np.lexsort((c, r))
        r, c, parent, opt = r[order], c[order], parent[order], opt[order]
        best = np.minimum.accumulate(c)
        keep = np.ones(r.size, dtype=bool)
        keep[1:] = c[1:] < best[:-1]
        res, cost = r[keep], c[keep]
        if res.size > max_points:
            raise ValueError(
                f"front: the partial front after layer {i} has {res.size} points "
                f"(> max_points={max_points}); trace it by budgets instead"
            )
        back.append((parent[keep], opt[keep]))
    picks = np.empty((res.size, len(arrs)), dtype=np.int64)
    p = np.arange(res.size)
    for i in range(len(arrs) - 1, -1, -1):  # walk every point back at once
        parent, opt = back[i]
        picks[:, i] = opt[p]
        p = parent[p]
    return [
        Choice(tuple(int(j) for j in row), float(r), float(c))
        for row, r, c in zip(picks, res, cost)
    ]


def front_by_budgets(options: Options, n: int = 50, solver: str = "exact") -> list[Choice]:
    """The front sampled by solving at ``n`` budgets evenly spaced between the smallest and
    the largest useful total resource; duplicates dropped, sorted by resource. Each point
    has the least cost possible at its resource (with ``exact``); among optima of equal
    cost the solver may return one with more resource than the front's point."""
    arrs = _check(options)
    lo = sum(float(a[:, 0].min()) for a in arrs)
    hi = sum(float(a[_undominated(a)[-1], 0]) for a in arrs)
    seen: dict[tuple[int, ...], Choice] = {}
    for b in np.linspace(lo, hi, max(n, 2)):
        ch = solve(options, float(b), solver)
        if ch is not None:
            seen.setdefault(ch.picks, ch)
    pts = sorted(seen.values(), key=lambda ch: (ch.resource, ch.cost))
    out: list[Choice] = []
    for ch in pts:  # keep the non-dominated ones
        if not out or ch.cost < out[-1].cost:
            out.append(ch)
    return out
