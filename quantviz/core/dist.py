"""A weighted empirical distribution with prefix sums: exact quantization MSE in O(L log N).

A layer's values, sorted once, plus running sums of ``w``, ``w*x`` and ``w*x^2`` give the
exact squared error of mapping every value to its nearest level of *any* sorted codebook
with ``L`` levels in ``O(L log N)``: the values that round to level ``c_j`` are a contiguous
run of the sorted array, bounded by the midpoints between neighbouring levels.  This makes
MSE-optimal range search, Lloyd's k-means and histogram statistics cheap after one sort.

The same structure holds a histogram (bin centres weighted by counts), so activation
statistics calibrate with the same code as weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Distribution"]


@dataclass(frozen=True, eq=False)
class Distribution:
    """Sorted values with weights and prefix sums (all float64)."""

    values: np.ndarray  # sorted, shape [N]
    cw: np.ndarray  # prefix sums of weights, shape [N + 1], cw[0] == 0
    cx: np.ndarray  # prefix sums of w * x
    cxx: np.ndarray  # prefix sums of w * x * x
    #: for a distribution built from a histogram: its bin width (each value is a bin centre
    #: whose weight is spread evenly over the bin); 0 for exact values
    bin_width: float = 0.0

    @classmethod
    def from_values(
        cls, x: np.ndarray, *, presorted: bool = False, cw: np.ndarray | None = None
    ) -> Distribution:
        """Equal-weight values; ``cw`` may pass a shared ``arange(N + 1)`` (read-only)."""
        v = np.asarray(x, dtype=np.float64).ravel()
        if not presorted:
            v = np.sort(v)
        n = v.size
        if cw is None or cw.shape != (n + 1,):
            cw = np.arange(n + 1, dtype=np.float64)
        cx = np.empty(n + 1)
        cx[0] = 0.0
        np.cumsum(v, out=cx[1:])
        cxx = np.empty(n + 1)
        cxx[0] = 0.0
        np.cumsum(v * v, out=cxx[1:])
        return cls(v, cw, cx, cxx)

    @classmethod
    def from_histogram(cls, counts: np.ndarray, edges: np.ndarray) -> Distribution:
        """Bin centres weighted by counts (empty bins dropped)."""
        counts = np.asarray(counts, dtype=np.float64)
        edges = np.asarray(edges, dtype=np.float64)
        if counts.ndim != 1 or edges.shape != (counts.size + 1,):
            raise ValueError("histogram: need counts [B] and edges [B + 1]")
        if np.any(counts < 0) or not np.all(np.isfinite(counts)):
            raise ValueError("histogram: counts must be finite and non-negative")
        keep = counts > 0
        if not keep.any():
            raise ValueError("histogram: no samples (all counts are zero)")
        centres = 0.5 * (edges[:-1] + edges[1:])
        v, w = centres[keep], counts[keep]
        widths = np.diff(edges)
        uniform = bool(np.allclose(widths, widths[0], rtol=1e-6, atol=0.0))
        return cls._weighted(v, w, float(widths[0]) if uniform else 0.0)

    @classmethod
    def _weighted(cls, v: np.ndarray, w: np.ndarray, bin_width: float = 0.0) -> Distribution:
        z = np.zeros(1)
        return cls(
            v,
            np.concatenate([z, np.cumsum(w)]),
            np.concatenate([z, np.cumsum(w * v)]),
            np.concatenate([z, np.cumsum(w * v * v)]),
            bin_width,
        )

    # -- basic statistics -----------------------------------------------------------------
    @property
    def total(self) -> float:
        return float(self.cw[-1])

    @property
    def min(self) -> float:
        return float(self.values[0])

    @property
    def max(self) -> float:
        return float(self.values[-1])

    @property
    def absmax(self) -> float:
        return max(abs(self.min), abs(self.max))

    @property
    def mean_square(self) -> float:
        return float(self.cxx[-1] / self.cw[-1])

    def quantile(self, q: float | np.ndarray) -> np.ndarray:
        """Weighted quantile(s), ``q`` in [0, 1] (nearest rank)."""
        q = np.clip(np.asarray(q, dtype=np.float64), 0.0, 1.0)
        target = q * self.cw[-1]
        idx = np.searchsorted(self.cw[1:], target, side="left")
        return self.values[np.clip(idx, 0, self.values.size - 1)]

    def abs_quantile(self, q: float) -> float:
        """Quantile of ``|x|`` (weighted)."""
        a = np.abs(self.values)
        order = np.argsort(a, kind="stable")
        a = a[order]
        w = np.diff(self.cw)[order]
        cw = np.cumsum(w)
        i = int(np.searchsorted(cw, q * cw[-1], side="left"))
        return float(a[min(i, a.size - 1)])

    # -- exact quantization error ---------------------------------------------------------
    def _runs(self, levels: np.ndarray) -> np.ndarray:
        """Indices splitting the sorted values into the runs that map to each level.

        Ties at a midpoint go to the lower level (``searchsorted`` side="right" on the
        midpoints would send them up; quantizers use the same convention as this).
        """
        mids = 0.5 * (levels[1:] + levels[:-1])
        inner = np.searchsorted(self.values, mids, side="right")
        return np.concatenate([[0], inner, [self.values.size]])

    def sse(self, levels: np.ndarray) -> float:
        """Weighted sum of squared errors when every value maps to its nearest level.

        ``levels`` must be sorted ascending (duplicates allowed).
        """
        c = np.asarray(levels, dtype=np.float64)
        b = self._runs(c)
        w = self.cw[b[1:]] - self.cw[b[:-1]]
        sx = self.cx[b[1:]] - self.cx[b[:-1]]
        sxx = self.cxx[b[1:]] - self.cxx[b[:-1]]
        return float(np.sum(sxx - 2.0 * c * sx + w * c * c).clip(min=0.0))

    def run_sums(self, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per level: weight, sum and sum of squares of the values mapping to it."""
        b = self._runs(np.asarray(levels, dtype=np.float64))
        w = self.cw[b[1:]] - self.cw[b[:-1]]
        sx = self.cx[b[1:]] - self.cx[b[:-1]]
        sxx = self.cxx[b[1:]] - self.cxx[b[:-1]]
        return w, sx, sxx

    def run_sums_batch(self, level_sets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`run_sums` for sorted codebooks ``level_sets`` [S, L]; each [S, L]."""
        c = np.asarray(level_sets, dtype=np.float64)
        mids = 0.5 * (c[:, 1:] + c[:, :-1])
        inner = np.searchsorted(self.values, mids.ravel(), side="right").reshape(mids.shape)
        s = c.shape[0]
        b = np.concatenate(
            [np.zeros((s, 1), dtype=np.int64), inner, np.full((s, 1), self.values.size)],
            axis=1,
        )
        w = self.cw[b[:, 1:]] - self.cw[b[:, :-1]]
        sx = self.cx[b[:, 1:]] - self.cx[b[:, :-1]]
        sxx = self.cxx[b[:, 1:]] - self.cxx[b[:, :-1]]
        return w, sx, sxx

    def _per_value(self, n_levels: int) -> bool:
        """Whether to assign values to levels one by one (``O(N log L)`` per codebook)
        rather than levels to runs of values (``O(L log N)``): codebooks far larger than
        the data, a 16-bit grid on a row or a group of 128 values."""
        return n_levels > 2 * self.values.size

    @property
    def _weights(self) -> np.ndarray:
        return np.diff(self.cw)

    def nearest_batch(self, level_sets: np.ndarray) -> np.ndarray:
        """Index of every value's nearest level in each sorted codebook ``level_sets``
        [S, L]: [S, N] (ties at a midpoint to the lower level, as :meth:`_runs`)."""
        c = np.asarray(level_sets, dtype=np.float64)
        mids = 0.5 * (c[:, 1:] + c[:, :-1])
        out = np.empty((c.shape[0], self.values.size), dtype=np.int64)
        for s in range(c.shape[0]):
            out[s] = np.searchsorted(mids[s], self.values, side="left")
        return out

    def scaled_fit(self, u: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, ...]:
        """For the codebooks ``a_s * u`` (``u`` sorted, every ``a_s > 0``) and each value's
        nearest level ``a_s * u_j``: per ``s`` the squared error, ``sum w x u_j`` and
        ``sum w u_j^2`` (the numerator and denominator of the best scale for that
        assignment); each [S]."""
        u = np.asarray(u, dtype=np.float64)
        a = np.asarray(a, dtype=np.float64)
        if self._per_value(u.size):
            uj = u[self.nearest_batch(a[:, None] * u[None, :])]  # [S, N]
            w, v = self._weights, self.values
            err = v[None, :] - a[:, None] * uj
            e = np.sum(w * err * err, axis=1)
            return np.clip(e, 0.0, None), (uj * (w * v)).sum(1), (uj * uj * w).sum(1)
        lv = a[:, None] * u[None, :]
        w, sx, sxx = self.run_sums_batch(lv)
        e = np.clip(np.sum(sxx - 2.0 * lv * sx + lv * lv * w, 1), 0.0, None)
        return e, np.sum(u * sx, axis=1), np.sum(u * u * w, axis=1)

    def mse(self, levels: np.ndarray) -> float:
        return self.sse(levels) / self.total

    def sse_batch(self, level_sets: np.ndarray) -> np.ndarray:
        """:meth:`sse` for many sorted codebooks at once, ``level_sets`` of shape [S, L]."""
        c = np.asarray(level_sets, dtype=np.float64)
        if self._per_value(c.shape[1]):
            err = self.values[None, :] - np.take_along_axis(c, self.nearest_batch(c), axis=1)
            return np.clip(np.sum(self._weights * err * err, axis=1), 0.0, None)
        w, sx, sxx = self.run_sums_batch(c)
        return np.clip(np.sum(sxx - 2.0 * c * sx + w * c * c, axis=1), 0.0, None)

    def lloyd(self, k: int, *, max_iter: int = 1000, tol: float = 1e-10) -> np.ndarray:
        """Lloyd's algorithm (1-D k-means) on the weighted values; sorted centroids [k].

        Deterministic initialisation: the means of ``k`` equal-weight quantile bins. Each
        iteration is ``O(k log N)`` on the prefix sums. Stops when no centroid moves by more
        than ``tol`` times the data range, or after ``max_iter`` iterations. A cluster that
        empties keeps its previous centroid.
        """
        n = self.values.size
        distinct = self.values[np.concatenate([[True], np.diff(self.values) > 0])]
        if distinct.size <= k:  # every distinct value gets its own level: zero error
            return np.concatenate([distinct, np.full(k - distinct.size, distinct[-1])])
        span = max(self.max - self.min, np.finfo(np.float64).tiny)
        # quantile-bin means as the initial codebook
        edges = np.searchsorted(self.cw[1:], np.linspace(0, self.total, k + 1)[1:-1], "left")
        b = np.concatenate([[0], np.clip(edges + 1, 0, n), [n]])
        b = np.maximum.accumulate(b)
        c = self._means(b, fallback=np.full(k, self.values[n // 2]))
        c = np.sort(c)
        for _ in range(max_iter):
            b = self._runs(c)
            new = np.sort(self._means(b, fallback=c))
            moved = np.max(np.abs(new - c))
            c = new
            if moved <= tol * span:
                break
        return c

    def _means(self, b: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        w = self.cw[b[1:]] - self.cw[b[:-1]]
        sx = self.cx[b[1:]] - self.cx[b[:-1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            m = sx / w
        return np.where(w > 0, m, fallback)

    @property
    def support(self) -> tuple[float, float]:
        """The smallest interval holding all the mass (bins included for a histogram)."""
        h = 0.5 * self.bin_width
        return self.min - h, self.max + h

    def histogram(self, bins: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        """Weighted histogram of the values over ``[lo, hi]`` (values outside are dropped).

        For a distribution made from a histogram (``bin_width > 0``) each bin's weight is
        spread evenly over its bin (the cumulative weight interpolated linearly at the new
        edges, rounded so that integer counts stay integers): re-binning onto a grid of
        similar width then neither drops nor doubles bins.
        """
        edges = np.linspace(lo, hi, bins + 1)
        if self.bin_width > 0:
            h = 0.5 * self.bin_width
            # the cumulative weight at each bin's left and right edge (empty bins were
            # dropped: between two kept bins it stays flat), interpolated at the new edges
            xs = np.stack([self.values - h, self.values + h], axis=1).ravel()
            ys = np.stack([self.cw[:-1], self.cw[1:]], axis=1).ravel()
            cum = np.interp(edges, xs, ys, left=0.0, right=self.total)
            integer = bool(np.all(np.diff(self.cw) == np.round(np.diff(self.cw))))
            if integer:
                cum = np.round(cum)
            return np.diff(cum), edges
        idx = np.searchsorted(self.values, edges, side="left")
        idx[-1] = np.searchsorted(self.values, hi, side="right")
        counts = self.cw[idx[1:]] - self.cw[idx[:-1]]
        return counts, edges


class _RowSearch:
    """``np.searchsorted(row, q, side="right")`` for sorted rows of equal length and one or
    more queries per row, by a lookup table instead of a binary search over all values.

    Each row is normalised (``(v - lo) / span + 2 * row``, as :func:`lloyd_rows` does) and
    cut into ``bins`` equal bins; a value's bin is ``floor((y - 2 * row) * bins)`` clipped,
    float64 ops that are each monotone in ``y``, applied alike to values and queries. So the
    values in lower bins than the query are <= it, those in higher bins are above it, and
    only the query's own bin (a few values) is searched: vectorised bisection over all
    queries at once. Exactly ``searchsorted``'s answer, ~40x faster on 16M values.
    """

    def __init__(self, g: np.ndarray, rows: int, n: int, offs: np.ndarray) -> None:
        self.g, self.n = g, n
        self.bins = nb = max(1, n // 4)
        t = g.reshape(rows, n) - offs  # the bin (see _bin), in place, plus row * bins
        t *= nb
        np.floor(t, out=t)
        np.clip(t, 0, nb - 1, out=t)
        t += np.arange(rows, dtype=np.float64)[:, None] * nb  # exact: integers < 2^53
        counts = np.bincount(t.ravel().astype(np.int64), minlength=rows * nb)
        del t
        starts = np.zeros((rows, nb + 1), dtype=np.int64)
        np.cumsum(counts.reshape(rows, nb), axis=1, out=starts[:, 1:])
        self.starts = starts.ravel()
        self.steps = int(counts.max()).bit_length()  # bisection steps for the fullest bin

    def _bin(self, y: np.ndarray, offs: np.ndarray) -> np.ndarray:
        t = np.floor((y - offs) * self.bins)
        return np.clip(t, 0, self.bins - 1).astype(np.int64)

    def right(self, rows: np.ndarray, q: np.ndarray, offs: np.ndarray) -> np.ndarray:
        """Row-local ``searchsorted(g_row, q, "right")`` for queries ``q`` [A, m] of
        ``rows`` [A] (``offs`` [A, 1]: their offsets)."""
        at = self._bin(q, offs) + (rows * (self.bins + 1))[:, None]
        lo, hi = self.starts[at], self.starts[at + 1]
        base = (rows * self.n)[:, None]
        for _ in range(self.steps):
            open_ = lo < hi
            if not open_.any():
                break
            mid = (lo + hi) >> 1
            le = self.g[base + np.minimum(mid, self.n - 1)] <= q
            lo = np.where(open_ & le, mid + 1, lo)
            hi = np.where(open_ & ~le, mid, hi)
        return lo


def lloyd_rows(
    sorted_rows: np.ndarray, k: int, *, max_iter: int = 1000, tol: float = 1e-10
) -> np.ndarray:
    """Lloyd's algorithm on every row of ``sorted_rows`` [R, K] at once; centroids [R, k].

    The vectorised form of :meth:`Distribution.lloyd` for equal-weight rows of equal length
    (per-channel / per-group k-means): rows are normalised to [0, 1] and offset by 2 * row;
    each iteration finds every midpoint's place in its row by :class:`_RowSearch` (what
    ``searchsorted`` over the flattened array gave, by a lookup table). Rows that have
    converged drop out of the iteration.
    """
    v = np.asarray(sorted_rows, dtype=np.float64)
    rows, n = v.shape
    if n <= k:  # fewer values than levels: each row's distinct values, padded
        return np.stack([Distribution.from_values(r, presorted=True).lloyd(k) for r in v])
    lo = v[:, :1]
    span = v[:, -1:] - lo
    span = np.where(span > 0, span, 1.0)
    offs = 2.0 * np.arange(rows, dtype=np.float64)[:, None]
    g = ((v - lo) / span + offs).ravel()
    cx = np.zeros((rows, n + 1))
    np.cumsum(v, axis=1, out=cx[:, 1:])
    # initial codebook: means of k equal-count runs
    b = np.round(np.linspace(0, n, k + 1)).astype(np.int64)
    c = (cx[:, b[1:]] - cx[:, b[:-1]]) / np.maximum(np.diff(b), 1)[None, :]
    active = np.arange(rows)
    search = _RowSearch(g, rows, n, offs)
    cxf = cx.ravel()  # indexed in place: no copy of the active rows' prefix sums
    for _ in range(max_iter):
        ca = c[active]
        mids = 0.5 * (ca[:, 1:] + ca[:, :-1])
        oa = offs[active]
        mu = (mids - lo[active]) / span[active] + oa
        pos = search.right(active, mu, oa)  # each midpoint's place in its own row
        bounds = np.concatenate(
            [np.zeros((active.size, 1), np.int64), pos, np.full((active.size, 1), n)], axis=1
        )
        w = np.diff(bounds, axis=1)
        at = bounds + (active * (n + 1))[:, None]
        sx = cxf[at[:, 1:]] - cxf[at[:, :-1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            new = np.where(w > 0, sx / w, ca)
        new.sort(axis=1)
        moved = np.max(np.abs(new - ca), axis=1) / span[active, 0]
        c[active] = new
        active = active[moved > tol]
        if active.size == 0:
            break
    return c
