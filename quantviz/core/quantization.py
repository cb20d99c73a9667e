"""``quantize(tensor, spec) -> QuantResult``: the one entry point of the numerics.

Also :func:`fake_quantize` (the dequantized tensor only) and :func:`fit_quantizer`
(parameters fitted once — e.g. from calibration statistics — and applied to many tensors,
as static activation quantization does).
"""

from __future__ import annotations

import functools
import math
import threading
import weakref
from collections import OrderedDict
from functools import cached_property

import numpy as np
import torch

from quantviz.core.dist import Distribution, lloyd_rows
from quantviz.core.quantizers.base import FLOAT_DTYPES, Fitted, RowView, chunks, row_view
from quantviz.core.quantizers.codebook import (
    CodebookFitted,
    ScaledCodebookFitted,
    base_levels,
)
from quantviz.core.quantizers.uniform import UniformFitted, uniform_levels_np, uniform_qparams
from quantviz.core.ranges import calibrate_row
from quantviz.core.spec import QuantSpec

__all__ = ["FittedQuantizer", "QuantResult", "fake_quantize", "fit_quantizer", "quantize"]


# ---------------------------------------------------------------------------------------
# input validation and the per-tensor cache of sorted rows
# ---------------------------------------------------------------------------------------
def _check_tensor(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"tensor: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"tensor: dtype {x.dtype} is not a floating-point type "
            "(float32, float16, bfloat16 or float64)"
        )
    if x.numel() == 0:
        raise ValueError(f"tensor is empty (shape {list(x.shape)}); nothing to quantize")
    if x.is_complex():
        raise ValueError("tensor: complex tensors are not supported")


def _check_finite(mn: torch.Tensor, mx: torch.Tensor) -> None:
    if not (torch.isfinite(mn).all() and torch.isfinite(mx).all()):
        raise ValueError("tensor contains NaN or inf values; quantization needs finite values")


def _row_extremes(xr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row min and max [R] (NaN propagates). ``aminmax(dim=1)`` is ~10x slower than these."""
    if xr.shape[0] == 1:
        mn, mx = torch.aminmax(xr)
        return mn.reshape(1), mx.reshape(1)
    return torch.amin(xr, dim=1), torch.amax(xr, dim=1)


#: rows longer than this are summarised by a histogram instead of sorted (see row_distributions)
EXACT_ROW_LIMIT = 1 << 17
HIST_BINS = 1 << 18


def row_distributions(xr: torch.Tensor, mn: torch.Tensor, mx: torch.Tensor) -> list[Distribution]:
    """One :class:`Distribution` per row of ``xr`` [R, K].

    Rows up to ``EXACT_ROW_LIMIT`` values are sorted (exact). Longer rows become a
    ``HIST_BINS``-bin histogram over their range (``torch.histc``, ~10x faster than sorting
    10M values here): k-means and range search then run on bin centres weighted by counts.
    With 2^18 bins the bin width is ~4e-6 of the range, so fitted levels and MSEs match the
    exact ones to ~1e-6 relative; the reported metrics are always measured on the values.
    """
    rows, k = xr.shape
    if k <= EXACT_ROW_LIMIT:
        arr = np.sort(xr.detach().cpu().numpy(), axis=1)
        cw = np.arange(k + 1, dtype=np.float64)  # equal weights: one arange shared by all rows
        return [Distribution.from_values(row, presorted=True, cw=cw) for row in arr]
    out = []
    for r in range(rows):
        lo, hi = float(mn[r]), float(mx[r])
        if hi <= lo:
            out.append(Distribution.from_values(np.array([lo])))
            continue
        counts = torch.histc(xr[r], bins=HIST_BINS, min=lo, max=hi)
        edges = np.linspace(lo, hi, HIST_BINS + 1)
        out.append(Distribution.from_histogram(counts.double().numpy(), edges))
    return out


class _SortedRowsCache:
    """Sorted rows (as Distributions) of recently quantized tensors.

    Keyed by the tensor's identity, its in-place version counter and the row view. The
    tensor is held weakly and its entries are dropped when it is freed; at most
    ``max_values`` summarised values are kept (least recently used go first). Re-quantizing
    the same weights with another spec then skips the sort — what the GUI does on every
    control change. Thread-safe (the GUI quantizes in workers).
    """

    def __init__(self, max_values: int = 40_000_000):
        self.max_values = max_values
        self._d: OrderedDict[tuple, tuple[weakref.ref, list[Distribution], int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, x: torch.Tensor, rv: RowView, xr: torch.Tensor, mn: torch.Tensor, mx: torch.Tensor
    ) -> list[Distribution]:
        key = (id(x), x._version, rv)
        with self._lock:
            hit = self._d.get(key)
            if hit is not None and hit[0]() is x:
                self._d.move_to_end(key)
                return hit[1]
        dists = row_distributions(xr, mn, mx)
        size = sum(d.values.size for d in dists)
        if size > self.max_values:
            return dists
        try:
            ref = weakref.ref(x, functools.partial(self._drop, key))
        except TypeError:  # pragma: no cover - tensors support weak references
            return dists
        with self._lock:
            self._d[key] = (ref, dists, size)
            total = sum(e[2] for e in self._d.values())
            while total > self.max_values and len(self._d) > 1:
                _, old = self._d.popitem(last=False)
                total -= old[2]
        return dists

    def _drop(self, key: tuple, _ref: object = None) -> None:
        with self._lock:
            self._d.pop(key, None)

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


_CACHE = _SortedRowsCache()


def clear_cache() -> None:
    """Forget the sorted rows cached for recently quantized tensors."""
    _CACHE.clear()


# ---------------------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------------------
def _fit_uniform(spec: QuantSpec, lo: np.ndarray, hi: np.ndarray) -> UniformFitted:
    scale, zp = uniform_qparams(
        torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32), spec
    )
    return UniformFitted(scale, zp, spec)


def _fit_scaled(spec: QuantSpec, magnitude: np.ndarray) -> ScaledCodebookFitted:
    bmax = float(base_levels(spec)[-1])
    scale = torch.as_tensor(np.asarray(magnitude, dtype=np.float64) / bmax, dtype=torch.float32)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row
    return ScaledCodebookFitted(spec, scale)


def _calibrate(spec: QuantSpec, dists: list[Distribution]) -> tuple[np.ndarray, np.ndarray]:
    """Clipping range per row for the uniform and scaled-codebook quantizers."""
    if spec.quantizer == "uniform":
        qmin, qmax = spec.qrange
        step = np.arange(qmin, qmax + 1, dtype=np.float64)
        half = (qmax - qmin) / 2.0

        def levels_sym(a: np.ndarray) -> np.ndarray:
            s = np.maximum(a / half, np.finfo(np.float32).eps)
            return step[None, :] * s[:, None]

        kw = dict(
            symmetric=spec.symmetric,
            n_positive_levels=2 ** (spec.bits - 1) if spec.symmetric else 2**spec.bits,
            levels_sym=levels_sym,
            levels_asym=lambda lo, hi: uniform_levels_np(lo, hi, spec),
        )
    else:
        base = base_levels(spec)
        bmax = float(base[-1])
        kw = dict(
            symmetric=True,
            n_positive_levels=(base.size - 1) // 2,
            levels_sym=lambda a: base[None, :] * (a[:, None] / bmax),
        )
    out = [calibrate_row(d, spec, **kw) for d in dists]  # type: ignore[arg-type]
    lo = np.array([o[0] for o in out])
    hi = np.array([o[1] for o in out])
    return lo, hi


def _fit(
    spec: QuantSpec,
    mn: torch.Tensor,
    mx: torch.Tensor,
    dists: list[Distribution] | None,
) -> Fitted:
    """Fit ``spec`` for rows with minima ``mn`` / maxima ``mx`` [R] (and sorted rows if needed)."""
    q = spec.quantizer
    if q == "kmeans":
        if dists is None:  # pragma: no cover - _needs_sorted() guarantees them
            raise ValueError("kmeans: the values' distribution is missing")
        k = 2**spec.bits
        same_length = len({d.values.size for d in dists}) == 1
        exact = all(d.total == d.values.size for d in dists)  # sorted values, not histograms
        if len(dists) > 1 and same_length and exact:
            levels = lloyd_rows(np.stack([d.values for d in dists]), k)
        else:
            levels = np.stack([d.lloyd(k) for d in dists])
        return CodebookFitted(torch.as_tensor(levels, dtype=torch.float32))
    if spec.calibration == "minmax":
        lo = mn.double().numpy()
        hi = mx.double().numpy()
        if q != "uniform" or spec.symmetric:
            a = np.maximum(np.abs(lo), np.abs(hi))
            lo, hi = -a, a
    else:
        if dists is None:  # pragma: no cover - _needs_sorted() guarantees them
            raise ValueError(f"calibration: {spec.calibration} needs the values' distribution")
        lo, hi = _calibrate(spec, dists)
    if q == "uniform":
        if spec.calibration == "minmax":  # exactly the observer's float32 min/max
            sc, zp = uniform_qparams(mn, mx, spec)
            return UniformFitted(sc, zp, spec)
        return _fit_uniform(spec, lo, hi)
    return _fit_scaled(spec, np.maximum(np.abs(lo), np.abs(hi)))


def _needs_sorted(spec: QuantSpec) -> bool:
    return spec.quantizer == "kmeans" or spec.calibration != "minmax"


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------
class QuantResult:
    """The outcome of :func:`quantize`.

    ``dequantized`` has the input's shape and dtype; every element is one of ``levels``
    (of its channel/group). ``levels`` is ``[L]`` per tensor and ``[R, L]`` per channel or
    group (R = channels or groups), sorted per row, in the input's dtype (computed on first
    access: a 16-bit per-channel grid is large). ``scale`` and ``zero_point`` have shape
    ``[]`` per tensor and ``[R]`` otherwise (``None`` where they do not apply: k-means has
    only its codebook, the scaled codebooks have no zero point). ``clip_min`` /
    ``clip_max`` are the lowest and highest level per row. For k-means, whose outermost
    levels are the means of the tail clusters, "clipped" values are those beyond them.

    The metrics are computed on first access, in one pass over the input and output:
    ``mse`` (mean squared error), ``sqnr_db`` (10 log10 of signal power over error power;
    ``inf`` when the error is zero) and ``clipped_fraction`` (the fraction of values
    outside ``[clip_min, clip_max]`` of their row). ``bits_per_value`` counts the payload
    and every scale, zero point and codebook entry
    (see :func:`quantviz.core.memory.bits_per_value`).
    """

    def __init__(
        self,
        x: torch.Tensor,
        spec: QuantSpec,
        rv: RowView,
        fitted: Fitted,
        xr: torch.Tensor,
        out_rows: torch.Tensor,
        dequantized: torch.Tensor,
    ):
        self.spec = spec
        self.row_view = rv
        self.fitted = fitted
        self.dequantized = dequantized
        self._x = x
        self._xr = xr
        self._out_rows = out_rows

    def _shaped(self, t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        return t.reshape(self.row_view.param_shape())

    @property
    def scale(self) -> torch.Tensor | None:
        return self._shaped(self.fitted.scale)

    @property
    def zero_point(self) -> torch.Tensor | None:
        if self.spec.quantizer != "uniform":
            return None
        return self._shaped(self.fitted.zero_point)

    @cached_property
    def levels(self) -> torch.Tensor:
        lv = self.fitted.levels().to(self.dequantized.dtype)
        return lv[0] if self.row_view.granularity == "per_tensor" else lv

    @cached_property
    def _bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.fitted.bounds()
        dt = self.dequantized.dtype
        return lo.to(dt), hi.to(dt)

    @property
    def clip_min(self) -> torch.Tensor:
        return self._bounds[0].reshape(self.row_view.param_shape())

    @property
    def clip_max(self) -> torch.Tensor:
        return self._bounds[1].reshape(self.row_view.param_shape())

    @cached_property
    def _metrics(self) -> tuple[float, float, float]:
        rv = self.row_view
        xr = self._xr
        if self.dequantized.dtype == torch.float32:
            dr = self._out_rows
        else:  # measure what the caller gets: the output in its own dtype
            dr = rv.to_rows(self.dequantized)
            xr = rv.to_rows(self._x)
        # a hair of tolerance: a scale computed as max/levels can put the max value one ulp
        # beyond the top level; that is rounding, not clipping
        lo, hi = (b.to(torch.float32) for b in self._bounds)
        tol = 2.0**-20 * torch.maximum(lo.abs(), hi.abs())
        lo, hi = lo - tol, hi + tol
        rows, k = xr.shape
        sse = sig = 0.0
        clipped = 0
        tmp = torch.empty(min(xr.numel(), 1 << 18))
        for r0, r1, c0, c1 in chunks(rows, k):
            xs = xr[r0:r1, c0:c1]
            e = tmp[: xs.numel()].view(xs.shape)
            torch.sub(dr[r0:r1, c0:c1], xs, out=e)
            ef = e.reshape(-1)
            sse += float(torch.dot(ef, ef))
            xf = xs.reshape(-1) if xs.is_contiguous() else xs.contiguous().reshape(-1)
            sig += float(torch.dot(xf, xf))
            clipped += int(torch.count_nonzero(xs < lo[r0:r1, None]))
            clipped += int(torch.count_nonzero(xs > hi[r0:r1, None]))
        n = xr.numel()
        mse = sse / n
        sqnr = math.inf if sse == 0.0 else 10.0 * math.log10(max(sig, 1e-300) / sse)
        return mse, sqnr, clipped / n

    @property
    def mse(self) -> float:
        return self._metrics[0]

    @property
    def sqnr_db(self) -> float:
        return self._metrics[1]

    @property
    def clipped_fraction(self) -> float:
        return self._metrics[2]

    @cached_property
    def bits_per_value(self) -> float:
        from quantviz.core.memory import bits_per_value

        return float(bits_per_value(self.spec, tuple(self.dequantized.shape)))

    def summary(self) -> dict[str, float]:
        """The numbers a legend shows."""
        return {
            "mse": self.mse,
            "sqnr_db": self.sqnr_db,
            "clipped_fraction": self.clipped_fraction,
            "bits_per_value": self.bits_per_value,
        }

    def __repr__(self) -> str:
        return (
            f"QuantResult({self.spec.short()}, shape={list(self.dequantized.shape)}, "
            f"dtype={self.dequantized.dtype})"
        )


# ---------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------
def quantize(x: torch.Tensor, spec: QuantSpec, *, out: torch.Tensor | None = None) -> QuantResult:
    """Fake-quantize ``x`` under ``spec``; see :class:`QuantResult`.

    ``out`` (optional, float32, ``x.numel()`` elements) is a buffer to write the output
    rows into; hot paths pass one to avoid a fresh allocation per call.

    Raises ``ValueError`` naming the problem for non-float, empty or non-finite tensors,
    an axis out of range or a group size that does not divide the row.
    """
    if not isinstance(spec, QuantSpec):
        raise ValueError(f"spec: expected a QuantSpec, got {type(spec).__name__}")
    _check_tensor(x)
    orig = x  # the cache of sorted rows is keyed by the caller's tensor
    x = x.detach()
    if x.device.type != "cpu":
        x = x.cpu()
    rv = row_view(x.shape, spec)
    xr = rv.to_rows(x)
    if not xr.is_contiguous():
        xr = xr.contiguous()
    mn, mx = _row_extremes(xr)
    _check_finite(mn, mx)
    dists = _CACHE.get(orig, rv, xr, mn, mx) if _needs_sorted(spec) else None
    fitted = _fit(spec, mn, mx, dists)
    if out is None or out.numel() != xr.numel() or out.dtype != torch.float32:
        out_rows = torch.empty_like(xr)
    else:
        out_rows = out.view(xr.shape)
    fitted.apply_(xr, out_rows)
    dq = rv.from_rows(out_rows)
    if dq.dtype != x.dtype:
        dq = dq.to(x.dtype)
    return QuantResult(x, spec, rv, fitted, xr, out_rows, dq)


def fake_quantize(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Only the dequantized tensor of :func:`quantize` (e.g. dynamic activation quantization)."""
    return quantize(x, spec).dequantized


class FittedQuantizer:
    """Quantization parameters fitted once (per tensor) and applied to any tensor.

    Built by :func:`fit_quantizer` from a sample of values or from a histogram (bin centres
    weighted by counts), as static activation quantization needs.
    """

    def __init__(self, spec: QuantSpec, fitted: Fitted):
        self.spec = spec
        self.fitted = fitted

    @property
    def scale(self) -> float | None:
        s = self.fitted.scale
        return None if s is None else float(s[0])

    @property
    def zero_point(self) -> int | None:
        if self.spec.quantizer != "uniform":
            return None
        return int(self.fitted.zero_point[0])  # type: ignore[index]

    @property
    def levels(self) -> torch.Tensor:
        return self.fitted.levels()[0]

    @property
    def clip_range(self) -> tuple[float, float]:
        lo, hi = self.fitted.bounds()
        return float(lo[0]), float(hi[0])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize ``x`` (any shape) with the fitted parameters."""
        xr = x.detach().reshape(1, -1)
        dtype = xr.dtype
        if dtype != torch.float32:
            xr = xr.to(torch.float32)
        xr = xr.contiguous()
        out = torch.empty_like(xr)
        self.fitted.apply_(xr, out)
        out = out.reshape(x.shape)
        return out if dtype == torch.float32 else out.to(dtype)


def fit_quantizer(
    spec: QuantSpec,
    *,
    values: torch.Tensor | None = None,
    histogram: tuple[np.ndarray, np.ndarray] | None = None,
) -> FittedQuantizer:
    """Fit a per-tensor quantizer to ``values`` or to a ``(counts, edges)`` histogram."""
    if (values is None) == (histogram is None):
        raise ValueError("fit_quantizer: give exactly one of values= or histogram=")
    if spec.granularity != "per_tensor":
        raise ValueError(
            "granularity: static quantization from statistics is per_tensor, "
            f"got {spec.granularity}"
        )
    if values is not None:
        _check_tensor(values)
        v = values.detach().cpu().to(torch.float32).reshape(-1)
        mn, mx = torch.aminmax(v)
        _check_finite(mn, mx)
        d = Distribution.from_values(v.numpy())
    else:
        counts, edges = histogram  # type: ignore[misc]
        d = Distribution.from_histogram(np.asarray(counts), np.asarray(edges))
        if not (np.isfinite(d.min) and np.isfinite(d.max)):
            raise ValueError("histogram: edges must be finite")
        mn = torch.tensor(d.min, dtype=torch.float32)
        mx = torch.tensor(d.max, dtype=torch.float32)
        if histogram is not None:  # the true extremes are the outer edges
            e = np.asarray(histogram[1], dtype=np.float64)
            c = np.asarray(histogram[0])
            nz = np.nonzero(c)[0]
            mn = torch.tensor(e[nz[0]], dtype=torch.float32)
            mx = torch.tensor(e[nz[-1] + 1], dtype=torch.float32)
    fitted = _fit(spec, mn.reshape(1), mx.reshape(1), [d])
    return FittedQuantizer(spec, fitted)
