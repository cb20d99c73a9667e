"""Range calibration: choose the clipping range ``[lo, hi]`` a quantizer maps onto its grid.

* ``minmax``: the smallest range holding every value (no clipping).
* ``percentile``: clip at the ``p``-th percentile — of ``|x|`` for symmetric ranges, of each
  tail (``100 - p`` and ``p``) for asymmetric ones.
* ``mse``: the range minimising the quantization MSE of the given values (the exact MSE of
  each candidate range comes from prefix sums over the sorted values, see
  :class:`~quantviz.core.dist.Distribution`): a coarse grid over the clipping fraction,
  then a finer grid around the best candidate.
* ``kl``: entropy calibration as onnxruntime implements TensorRT's algorithm
  (``onnxruntime.quantization.calibrate``, ``HistogramCollector.get_entropy_threshold``):
  a 2048-bin histogram of the values over ``[-max|x|, max|x|]``; every window of
  ``2i + 1`` bins around zero (``i`` from half the number of grid levels up: 128 bins for
  8 bits) is compared, as ``KL(P || Q)``, with its quantized version ``Q`` (the window
  merged into as many bins as the grid has levels and expanded back), and the window with
  the smallest divergence, clipped to the data's ``[min, max]``, is the range (symmetric
  grids take its larger magnitude). Tested against onnxruntime's own function on the same
  histograms: the same window. Grids with more levels than the histogram has bins use
  the full range.

Symmetric ranges come back as ``(-a, a)``. All functions work on one
:class:`Distribution` (one row); :func:`calibrate_rows` loops over rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from quantviz.core.dist import Distribution
from quantviz.core.spec import QuantSpec

__all__ = [
    "calibrate_row",
    "entropy_threshold",
    "kl_threshold",
    "mse_search_asymmetric",
    "mse_search_symmetric",
]

LevelsFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # ranges lo, hi [S] -> sets [S, L]
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
    d: Distribution,
    levels_for: ScaledLevels,
    *,
    coarse: int = 100,
    fine: int = 20,
    starts: int = 6,
) -> float:
    """Clipping magnitude ``a`` in ``(0, max|x|]`` minimising the MSE of ``levels_for(a)``.

    A coarse grid over ``(0, max|x|]``, a finer grid around its best point, then each of the
    ``starts`` best local minima of the grids is polished to the bottom of its basin:
    the levels scale with ``a`` (``levels_for(a) = a * u``), so for a fixed assignment of
    values to levels the squared error is a parabola in ``a`` with its minimum at
    ``sum_j u_j S_j / sum_j u_j^2 W_j`` (``S_j``, ``W_j``: sum and weight of the values
    assigned to level ``j``, from the prefix sums). Alternating assignment and this exact
    step never increases the error and stops when the assignment no longer changes (a
    local minimum that is exact, not a grid point: the narrow minima a grid steps over).
    """
    amax = d.absmax
    if amax == 0.0:
        return 0.0
    grid = amax * np.linspace(1.0 / coarse, 1.0, coarse)
    sse = d.sse_batch(levels_for(grid))
    best = int(np.argmin(sse))
    grid2 = _refine(grid, best, fine)
    sse2 = d.sse_batch(levels_for(grid2))
    cand = np.concatenate([grid, grid2])
    err = np.concatenate([sse, sse2])
    j = int(np.argmin(err))
    a_best, e_best = float(cand[j]), float(err[j])
    u = levels_for(np.array([1.0]))[0].astype(np.float64)
    if not np.allclose(levels_for(np.array([2.0]))[0], 2.0 * u, rtol=1e-9, atol=0.0):
        return a_best  # levels not proportional to a: no exact step
    a, e = _polish(d, u, _local_minima(grid, sse, grid2, sse2, starts), amax)
    return a if e < e_best else a_best


def _local_minima(
    g1: np.ndarray, e1: np.ndarray, g2: np.ndarray, e2: np.ndarray, k: int
) -> np.ndarray:
    """Up to ``k`` grid points that are local minima of their grid, the lowest first."""
    pts, errs = [], []
    for g, e in ((g1, e1), (g2, e2)):
        left = np.concatenate([[np.inf], e[:-1]])
        right = np.concatenate([e[1:], [np.inf]])
        m = (e <= left) & (e <= right)
        pts.append(g[m])
        errs.append(e[m])
    p, er = np.concatenate(pts), np.concatenate(errs)
    return p[np.argsort(er, kind="stable")[:k]]


def _polish(
    d: Distribution,
    u: np.ndarray,
    a0: np.ndarray,
    amax: float,
    *,
    lo_bound: float | None = None,
) -> tuple[float, float]:
    """Alternate nearest-level assignment and the exact best ``a`` for it, from every start
    in ``a0`` at once; the best ``(a, sse)`` reached."""
    a = np.asarray(a0, dtype=np.float64)
    best_a, best_e = float(a[0]), np.inf
    prev: np.ndarray | None = None
    for _ in range(50):
        e, num, den = d.scaled_fit(u, a)
        k = int(np.argmin(e))
        if e[k] < best_e:
            best_a, best_e = float(a[k]), float(e[k])
        with np.errstate(invalid="ignore", divide="ignore"):
            a_new = np.where(den > 0, num / den, a)
        a_new = np.clip(a_new, amax * 1e-9 if lo_bound is None else lo_bound, amax)
        # stop a start when its assignment no longer changes (then a_new == a) or its error
        # no longer improves by more than float rounding
        moved = (np.abs(a_new - a) > 1e-12 * amax) & (e > 0)
        if prev is not None:
            moved &= e < prev * (1 - 1e-12)
        if not moved.any():
            break
        a, prev = a_new[moved], e[moved]
    return best_a, best_e


#: level values scored in one batch of the asymmetric search (32 MiB of float64)
_BATCH_LEVELS = 1 << 22


def mse_search_asymmetric(
    d: Distribution, levels_for: LevelsFn, *, coarse: int = 24, fine: int = 12
) -> tuple[float, float]:
    """``(lo, hi)`` with ``lo <= 0 <= hi`` minimising the MSE.

    A coarse grid of ``lo`` in ``[min, 0]`` x ``hi`` in ``[0, max]``, a finer one around the
    best pair, then the best pair's affine grid ``(q - z) * s`` is polished: for its zero
    point ``z`` and ``z +- 1, 2`` the exact best scale (alternating assignment and the
    closed-form scale, as in :func:`mse_search_symmetric`).
    """
    lo0, hi0 = min(d.min, 0.0), max(d.max, 0.0)
    if lo0 == hi0:
        return 0.0, 0.0

    def best_of(los: np.ndarray, his: np.ndarray) -> tuple[float, float, float]:
        a, b = np.meshgrid(los, his, indexing="ij")  # lo-major, as the pairs were listed
        keep = (b > a).ravel()
        pl, ph = a.ravel()[keep], b.ravel()[keep]
        n_levels = levels_for(pl[:1], ph[:1]).shape[1]
        step = max(1, _BATCH_LEVELS // n_levels)  # bounded memory at 16 bits
        sse = np.concatenate(
            [
                d.sse_batch(levels_for(pl[i : i + step], ph[i : i + step]))
                for i in range(0, pl.size, step)
            ]
        )
        k = int(np.argmin(sse))
        return float(pl[k]), float(ph[k]), float(sse[k])

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
    if e2 <= e:
        lo, hi, e = lo2, hi2, e2
    return _polish_affine(d, levels_for, lo, hi, e, hi0 - lo0)


def _polish_affine(
    d: Distribution, levels_for: LevelsFn, lo: float, hi: float, e: float, span: float
) -> tuple[float, float]:
    """Polish an affine grid ``(q - z) * s``: for the grid's zero point and its neighbours,
    the exact best scale (:func:`_polish`); the range of the best grid found."""
    lv = levels_for(np.array([lo]), np.array([hi]))[0].astype(np.float64)
    if lv.size < 2 or not lv[1] > lv[0]:
        return lo, hi
    s = float(lv[1] - lv[0])
    u0 = np.round(lv / s)
    if not np.allclose(u0 * s, lv, rtol=0.0, atol=1e-9 * max(abs(lv[0]), abs(lv[-1]))):
        return lo, hi  # not an affine grid
    best = (lo, hi, e)
    for dz in (-2, -1, 0, 1, 2):
        u = u0 + dz
        if u[0] > 0 or u[-1] < 0:  # the grid must hold zero
            continue
        a, err = _polish(d, u, np.array([s]), span, lo_bound=span * 1e-12)
        if err < best[2]:
            best = (float(u[0] * a), float(u[-1] * a), err)
    return best[0], best[1]


def entropy_threshold(
    hist: np.ndarray, edges: np.ndarray, n_quantized_bins: int, *, eps: float = 1e-4
) -> tuple[float, float]:
    """The KL-optimal window ``(lo, hi)`` of a histogram symmetric about zero.

    The algorithm of onnxruntime's entropy calibrator
    (``onnxruntime.quantization.calibrate.HistogramCollector.get_entropy_threshold``, itself
    TensorRT's / MXNet's), vectorised over the candidates: ``hist`` has an even number of
    bins ``B`` over ``[-T, T]`` (bin ``B // 2`` starts at zero). Candidate ``i`` (from
    ``n_quantized_bins // 2`` to ``B // 2``) is the window of bins ``[B/2 - i, B/2 + i]``;
    its reference distribution ``P`` is the window with the clipped counts added to its
    first and last bin, and ``Q`` merges the window into ``n_quantized_bins`` runs of
    ``len // n_quantized_bins`` bins (the remainder joins the last run's sum but keeps
    ``Q = 0``), each run's count spread evenly (integer division, as onnxruntime's int64
    buffer does) over the bins where ``P`` is nonzero. Zero bins of ``P`` and ``Q`` are
    smoothed (``eps`` added, the same total taken from the nonzero bins) and the window
    with the smallest ``KL(P || Q)`` (the first on ties) gives ``(edges[B/2 - i],
    edges[B/2 + i + 1])``. Returns ``(edges[0], edges[-1])`` when there is no candidate.
    """
    h = np.asarray(hist, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    nb = h.size
    nq = int(n_quantized_bins)
    z, half = nb // 2, nq // 2
    if nq < 1 or half > z or nq > nb or not h.any():
        return float(e[0]), float(e[-1])
    ii = np.arange(half, z + 1)
    start = z - ii
    end = np.minimum(z + ii + 1, nb)
    length = end - start
    m = length // nq  # bins per quantized bin, >= 1
    cs = np.concatenate([[0.0], np.cumsum(h)])
    nzh = h != 0
    cnz = np.concatenate([[0], np.cumsum(nzh)])
    left_out = cs[start]
    right_out = cs[nb] - cs[end]
    # quantized bins [C, nq]: sums of runs of m bins; the remainder joins the last
    k = np.arange(nq + 1)
    b = start[:, None] + k[None, :] * m[:, None]  # run boundaries [C, nq + 1]
    qsum = cs[b[:, 1:]] - cs[b[:, :-1]]
    qsum[:, -1] += cs[end] - cs[b[:, -1]]
    # nonzero bins of P per run (P's first / last bin include the clipped counts)
    nz = (cnz[b[:, 1:]] - cnz[b[:, :-1]]).astype(np.float64)
    first_nz = (h[start] != 0) | (left_out > 0)
    nz[:, 0] += first_nz.astype(np.float64) - nzh[start]
    last_in_run = length == nq * m  # P's last bin belongs to the last run (no remainder)
    last_nz = (h[end - 1] != 0) | (right_out > 0)
    nz[last_in_run, -1] += last_nz[last_in_run].astype(np.float64) - nzh[end - 1][last_in_run]
    with np.errstate(invalid="ignore", divide="ignore"):
        qval = np.where(nz > 0, np.trunc(qsum / np.where(nz > 0, nz, 1.0)), 0.0)
    kl = np.empty(ii.size)
    j = np.arange(nb)
    for c0 in range(0, ii.size, 256):  # bounded memory: 256 candidates x B bins at a time
        sl = slice(c0, min(c0 + 256, ii.size))
        st, ln, mm = start[sl], length[sl], m[sl]
        valid = j[None, :] < ln[:, None]
        p = np.where(valid, h[np.minimum(st[:, None] + j[None, :], nb - 1)], 0.0)
        rows = np.arange(p.shape[0])
        p[rows, 0] += left_out[sl]
        p[rows, ln - 1] += right_out[sl]
        run = j[None, :] // mm[:, None]
        q = np.where(run < nq, np.take_along_axis(qval[sl], np.minimum(run, nq - 1), axis=1), 0.0)
        q = np.where(valid, q, 0.0)
        kl[sl] = _kl_rows(p, q, valid, eps)
    # near-ties (within float32 noise of the minimum) are decided as onnxruntime decides
    # them: by its float32 KL of each window, the first on equal values
    finite = np.isfinite(kl)
    if not finite.any():
        return float(e[start[0]]), float(e[end[0]])
    kmin = kl[finite].min()
    near = np.flatnonzero(finite & (kl <= kmin + 1e-3 * abs(kmin) + 1e-12))
    best = int(near[0])
    if near.size > 1:
        k32 = [_kl_float32(h, start[c], end[c], qval[c], m[c], nq, eps) for c in near]
        best = int(near[int(np.argmin(k32))])
    return float(e[start[best]]), float(e[end[best]])


def _kl_float32(
    h: np.ndarray, start: int, end: int, qval: np.ndarray, m: int, nq: int, eps: float
) -> float:
    """One window's KL in onnxruntime's arithmetic (float32 smoothing, sums and logs)."""
    p = h[start:end].copy()
    p[0] += h[:start].sum()
    p[-1] += h[end:].sum()
    q = np.zeros(p.size)
    q[: nq * m] = np.repeat(qval, m)
    ps, qs = _smooth32(p, eps), _smooth32(q, eps)
    if ps is None or qs is None:
        return np.inf
    ps = np.float32(1.0) * ps / np.sum(ps, axis=0, keepdims=True)
    qs = np.float32(1.0) * qs / np.sum(qs, axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = ps * np.log(ps / qs)
    terms[(ps == 0) & (qs >= 0)] = 0
    terms[~((ps > 0) & (qs > 0))] = np.inf
    return float(np.sum(terms, axis=0))


def _smooth32(p: np.ndarray, eps: float) -> np.ndarray | None:
    is_zeros = (p == 0).astype(np.float32)
    is_nonzeros = (p != 0).astype(np.float32)
    n_zeros = is_zeros.sum()
    n_nonzeros = p.size - n_zeros
    if not n_nonzeros:
        return None
    eps1 = eps * float(n_zeros) / float(n_nonzeros)
    out = p.astype(np.float32)
    out += eps * is_zeros + (-eps1) * is_nonzeros
    return out


def _smooth_rows(p: np.ndarray, valid: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero bins get ``eps``, nonzero bins give up the same total; ``ok`` False if all zero."""
    zero = (p == 0) & valid
    nonzero = (p != 0) & valid
    n0 = zero.sum(axis=1)
    n1 = nonzero.sum(axis=1)
    ok = n1 > 0
    take = eps * n0 / np.maximum(n1, 1)
    return p + eps * zero - take[:, None] * nonzero, ok


def _kl_rows(p: np.ndarray, q: np.ndarray, valid: np.ndarray, eps: float) -> np.ndarray:
    """Row-wise ``KL(P || Q)`` over the ``valid`` bins after smoothing and normalising."""
    ps, okp = _smooth_rows(p, valid, eps)
    qs, okq = _smooth_rows(q, valid, eps)
    ps = ps / ps.sum(axis=1, keepdims=True)
    qs = qs / qs.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(valid & (ps > 0), ps * np.log(ps / qs), 0.0)
        bad = (valid & (ps > 0) & ~(qs > 0)).any(axis=1)
    out = terms.sum(axis=1)
    out[bad | ~okp | ~okq] = np.inf
    return out


def kl_threshold(
    d: Distribution, n_quantized_bins: int, *, bins: int = KL_BINS
) -> tuple[float, float]:
    """Entropy calibration of ``d``: :func:`entropy_threshold` on its signed histogram.

    The histogram has ``bins`` bins over ``[-max|x|, max|x|]`` (onnxruntime's layout); the
    window is clipped to the data's ``[min, max]`` as onnxruntime does.
    """
    mn, mx = d.support
    amax = max(abs(mn), abs(mx))
    if amax == 0.0:
        return 0.0, 0.0
    counts, edges = d.histogram(bins, -amax, amax)
    lo, hi = entropy_threshold(counts, edges, n_quantized_bins)
    return max(lo, mn), min(hi, mx)


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
        # the window [-t, t] of a symmetric grid holds 2 * n_positive_levels levels
        nq = 2 * n_positive_levels if symmetric else n_positive_levels
        lo, hi = kl_threshold(d, nq)
        if symmetric:
            t = max(abs(lo), abs(hi))
            return -t, t
        return lo, hi
    raise ValueError(f"calibration: unknown {cal!r}")


def calibrate_rows(
    dists: Sequence[Distribution], spec: QuantSpec, **kw: object
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`calibrate_row` for every row; ``(lo [R], hi [R])`` float64."""
    out = [calibrate_row(d, spec, **kw) for d in dists]  # type: ignore[arg-type]
    lo = np.array([o[0] for o in out], dtype=np.float64)
    hi = np.array([o[1] for o in out], dtype=np.float64)
    return lo, hi
