"""Range calibration: choose the clipping range ``[lo, hi]`` a quantizer maps onto its grid.

* ``minmax``: the smallest range holding every value (no clipping).
* ``percentile``: clip at the ``p``-th percentile — of ``|x|`` for symmetric ranges, of each
  tail (``100 - p`` and ``p``) for asymmetric ones.
* ``mse``: the range minimising the quantization MSE of the given values (the exact MSE of
  each candidate range comes from prefix sums over the sorted values, see
  :class:`~quantviz.core.dist.Distribution`): a coarse grid over the clipping fraction,
  then a finer grid around the best candidate.
* ``kl``: TensorRT's entropy calibration: a 2048-bin histogram of ``|x|``; for each
  candidate threshold the clipped reference distribution ``P`` is compared with its
  quantized version ``Q`` (merged into as many bins as the grid has positive levels) and
  the threshold with the smallest ``KL(P || Q)`` wins. For grids with more than 1024
  positive levels KL is meaningless at this resolution and the max magnitude is used.

Symmetric ranges come back as ``(-a, a)``. All functions work on one
:class:`Distribution` (one row); :func:`calibrate_rows` loops over rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from quantviz.core.dist import Distribution
from quantviz.core.spec import QuantSpec

__all__ = ["calibrate_row", "kl_threshold", "mse_search_asymmetric", "mse_search_symmetric"]

LevelsFn = Callable[[float, float], np.ndarray]
ScaledLevels = Callable[[np.ndarray], np.ndarray]  # magnitudes [S] -> level sets [S, L]

KL_BINS = 2048


def percentile_range(d: Distribution, p: float, symmetric: bool) -> tuple[float, float]:
    if symmetric:
        a = d.abs_quantile(p / 100.0)
        return -a, a
    lo, hi = d.quantile(np.array([1.0 - p / 100.0, p / 100.0]))
    return float(lo), float(hi)


def _refine(grid: np.ndarray, best: int, n: int) -> np.ndarray:
    a = grid[max(best - 1, 0)]
    b = grid[min(best + 1, grid.size - 1)]
    return np.linspace(a, b, n)


def mse_search_symmetric(
    d: Distribution, levels_for: ScaledLevels, *, coarse: int = 100, fine: int = 60
) -> float:
    """Clipping magnitude ``a`` in ``(0, max|x|]`` minimising the MSE of ``levels_for(a)``."""
    amax = d.absmax
    if amax == 0.0:
        return 0.0
    grid = amax * np.linspace(1.0 / coarse, 1.0, coarse)
    sse = d.sse_batch(levels_for(grid))
    best = int(np.argmin(sse))
    grid2 = _refine(grid, best, fine)
    sse2 = d.sse_batch(levels_for(grid2))
    j = int(np.argmin(sse2))
    return float(grid2[j]) if sse2[j] <= sse[best] else float(grid[best])


def mse_search_asymmetric(
    d: Distribution, levels_for: LevelsFn, *, coarse: int = 24, fine: int = 12
) -> tuple[float, float]:
    """``(lo, hi)`` with ``lo`` in ``[min, 0]`` and ``hi`` in ``[0, max]`` minimising the MSE."""
    lo0, hi0 = min(d.min, 0.0), max(d.max, 0.0)
    if lo0 == hi0:
        return 0.0, 0.0

    def best_of(los: np.ndarray, his: np.ndarray) -> tuple[float, float, float]:
        pairs = [(lo, hi) for lo in los for hi in his if hi > lo]
        sets = np.stack([levels_for(lo, hi) for lo, hi in pairs])
        sse = d.sse_batch(sets)
        k = int(np.argmin(sse))
        return pairs[k][0], pairs[k][1], float(sse[k])

    fr = np.linspace(1.0 / coarse, 1.0, coarse)
    los = lo0 * fr if lo0 < 0 else np.array([0.0])
    his = hi0 * fr if hi0 > 0 else np.array([0.0])
    lo, hi, e = best_of(los, his)
    # refine around the best pair
    step_lo = abs(lo0) / coarse
    step_hi = abs(hi0) / coarse
    los2 = np.clip(np.linspace(lo - step_lo, lo + step_lo, fine), lo0, 0.0) if lo0 < 0 else los
    his2 = np.clip(np.linspace(hi - step_hi, hi + step_hi, fine), 0.0, hi0) if hi0 > 0 else his
    lo2, hi2, e2 = best_of(los2, his2)
    return (lo2, hi2) if e2 <= e else (lo, hi)


def kl_threshold(d: Distribution, n_levels: int, *, bins: int = KL_BINS) -> float:
    """TensorRT-style entropy calibration: the magnitude threshold minimising KL(P || Q).

    ``n_levels`` is the number of quantization bins the positive range is merged into
    (``2^(b-1)`` for a symmetric b-bit grid).
    """
    amax = d.absmax
    if amax == 0.0:
        return 0.0
    if n_levels >= bins // 2:
        return amax
    # histogram of |x|
    a = np.abs(d.values)
    order = np.argsort(a, kind="stable")
    w = np.diff(d.cw)[order]
    hist, edges = np.histogram(a[order], bins=bins, range=(0.0, amax), weights=w)
    best_i, best_kl = bins, np.inf
    total_tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # sum of hist[i:]
    for i in range(n_levels, bins + 1):
        p = hist[:i].copy()
        p[i - 1] += total_tail[i]
        nonzero = hist[:i] != 0
        # merge hist[:i] into n_levels bins, spread each merged mass over its nonzero bins
        merged = i // n_levels
        starts = np.arange(n_levels) * merged
        sums = np.add.reduceat(hist[:i], starts)
        counts = np.add.reduceat(nonzero.astype(np.float64), starts)
        which = np.minimum(np.arange(i) // merged, n_levels - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            per = np.where(counts > 0, sums / counts, 0.0)
        q = np.where(nonzero, per[which], 0.0)
        kl = _kl(p, q)
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(edges[best_i])


def _kl(p: np.ndarray, q: np.ndarray, eps: float = 1e-4) -> float:
    """KL(P || Q) after normalising and smoothing zeros (as TensorRT / MXNet do)."""
    ps, qs = p.sum(), q.sum()
    if ps <= 0 or qs <= 0:
        return np.inf
    ps_ = _smooth(p / ps, eps)
    qs_ = _smooth(q / qs, eps)
    if ps_ is None or qs_ is None:
        return np.inf
    p, q = ps_, qs_
    q = np.maximum(q, 1e-12)  # smoothing can push a tiny nonzero bin below zero
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def _smooth(p: np.ndarray, eps: float) -> np.ndarray | None:
    zero = p == 0
    nz = (~zero).sum()
    nzero = zero.sum()
    if nz == 0:
        return None
    take = eps * nzero / nz
    if take >= 1.0:
        return None
    return p + eps * zero - take * (~zero)


def calibrate_row(
    d: Distribution,
    spec: QuantSpec,
    *,
    symmetric: bool,
    n_positive_levels: int,
    levels_sym: ScaledLevels | None = None,
    levels_asym: LevelsFn | None = None,
) -> tuple[float, float]:
    """The clipping range of one row under ``spec.calibration``."""
    cal = spec.calibration
    if cal == "minmax":
        if symmetric:
            return -d.absmax, d.absmax
        return d.min, d.max
    if cal == "percentile":
        return percentile_range(d, spec.percentile, symmetric)
    if cal == "mse":
        if symmetric:
            if levels_sym is None:
                raise ValueError("calibration: mse needs the quantizer's levels for a range")
            a = mse_search_symmetric(d, levels_sym)
            return -a, a
        if levels_asym is None:
            raise ValueError("calibration: mse needs the quantizer's levels for a range")
        return mse_search_asymmetric(d, levels_asym)
    if cal == "kl":
        t = kl_threshold(d, n_positive_levels)
        if symmetric:
            return -t, t
        return max(d.min, -t), min(d.max, t)
    raise ValueError(f"calibration: unknown {cal!r}")


def calibrate_rows(
    dists: Sequence[Distribution], spec: QuantSpec, **kw: object
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`calibrate_row` for every row; ``(lo [R], hi [R])`` float64."""
    out = [calibrate_row(d, spec, **kw) for d in dists]  # type: ignore[arg-type]
    lo = np.array([o[0] for o in out], dtype=np.float64)
    hi = np.array([o[1] for o in out], dtype=np.float64)
    return lo, hi
