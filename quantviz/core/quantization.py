"""``quantize(tensor, spec) -> QuantResult``: the one entry point of the numerics.

The parts live beside it: :mod:`.sorted_rows` (input checks, the cache of sorted rows),
:mod:`.fitting` (ranges, scales, codebooks per row) and :mod:`.result` (``QuantResult``).

Also :func:`fake_quantize` (the dequantized tensor only) and :func:`fit_quantizer`
(parameters fitted once — e.g. from calibration statistics — and applied to many tensors,
as static activation quantization does).
"""

from __future__ import annotations

import numpy as np
import torch

from quantviz.core.dist import Distribution
from quantviz.core.fitting import _fit, _needs_sorted
from quantviz.core.quantizers.base import (
    Fitted,
    RowView,
    chunk_target,
    chunks,
    kernel_threads,
    row_view,
)
from quantviz.core.result import MetricSums, QuantResult
from quantviz.core.sorted_rows import (
    _CACHE,
    EXACT_ROW_LIMIT,
    HIST_BINS,
    _check_finite,
    _check_tensor,
    _row_extremes,
    clear_cache,
    row_distributions,
)
from quantviz.core.spec import QuantSpec

__all__ = [
    "EXACT_ROW_LIMIT",
    "HIST_BINS",
    "FittedQuantizer",
    "QuantResult",
    "clear_cache",
    "fake_quantize",
    "fit_quantizer",
    "quantize",
    "row_distributions",
]


def quantize(
    x: torch.Tensor, spec: QuantSpec, *, out: torch.Tensor | None = None, metrics: bool = True
) -> QuantResult:
    """Fake-quantize ``x`` under ``spec``; see :class:`QuantResult`.

    ``out`` (optional, float32, ``x.numel()`` elements) is a buffer to write the output
    rows into; hot paths pass one to avoid a fresh allocation per call.

    ``metrics`` (default): measure MSE, SQNR and the clipped fraction in the same pass,
    block by block while each block is in cache (a few percent of the quantization);
    ``False`` leaves them to a pass of their own on first access.

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
    if metrics and out is None and _streamable(x, rv, spec):
        return _quantize_streamed(x, spec, rv)
    with kernel_threads(x.numel()):
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
        if not metrics:
            fitted.apply_(xr, out_rows)
            dq = rv.from_rows(out_rows)
            if dq.dtype != x.dtype:
                dq = dq.to(x.dtype)
            return QuantResult(x, spec, rv, fitted, xr, out_rows, dq, mn, mx)
        dq, sums = _apply_measured(fitted, rv, x.dtype, xr, out_rows, mn, mx)
    return QuantResult(x, spec, rv, fitted, xr, out_rows, dq, mn, mx, sums.result())


def _streamable(x: torch.Tensor, rv: RowView, spec: QuantSpec) -> bool:
    """A 16-bit tensor whose rows are its own layout, under a spec fitted from row extremes:
    quantized block by block from its own dtype (no float32 copy of input or output)."""
    return (
        x.dtype in (torch.float16, torch.bfloat16)
        and not (rv.granularity == "per_channel" and rv.axis != 0)
        and not _needs_sorted(spec)
    )


def _quantize_streamed(x: torch.Tensor, spec: QuantSpec, rv: RowView) -> QuantResult:
    """:func:`quantize` of a 16-bit tensor, one float32 block at a time (see _streamable)."""
    rows, k = rv.rows, rv.row_len
    with kernel_threads(x.numel()):
        x2 = x.reshape(rows, k)
        mn, mx = (t.to(torch.float32) for t in _row_extremes(x2))  # exact in its own dtype
        _check_finite(mn, mx)
        fitted = _fit(spec, mn, mx, None)
        target = chunk_target()
        n = min(x.numel(), target)
        scratch = fitted.scratch(n)
        sums = MetricSums(fitted, x.dtype, mn, mx, n)
        xin, xout = torch.empty(n), torch.empty(n)
        dq = torch.empty(rv.shape, dtype=x.dtype)
        dq_rows = dq.view(rows, k)
        for r0, r1, c0, c1 in chunks(rows, k, target):
            shape = (r1 - r0, c1 - c0)
            m = shape[0] * shape[1]
            xs, o = xin[:m].view(shape), xout[:m].view(shape)
            xs.copy_(x2[r0:r1, c0:c1])
            fitted.apply_block_(xs, o, r0, r1, scratch)
            sums.add(xs, o, r0, r1, dq_rows[r0:r1, c0:c1])
    return QuantResult(x, spec, rv, fitted, None, None, dq, mn, mx, sums.result())


def _apply_measured(
    fitted: Fitted,
    rv: RowView,
    dtype: torch.dtype,
    xr: torch.Tensor,
    out_rows: torch.Tensor,
    mn: torch.Tensor,
    mx: torch.Tensor,
) -> tuple[torch.Tensor, MetricSums]:
    """Quantize ``xr`` into ``out_rows`` block by block and measure each block while it is
    hot; a 16-bit output in the rows' layout is written block by block too."""
    rows, k = xr.shape
    target = chunk_target()
    scratch = fitted.scratch(min(xr.numel(), target))
    sums = MetricSums(fitted, dtype, mn, mx, min(xr.numel(), target))
    direct = dtype != torch.float32 and not (rv.granularity == "per_channel" and rv.axis != 0)
    dq = torch.empty(rv.shape, dtype=dtype) if direct else None
    dq_rows = dq.view(rows, k) if dq is not None else None
    for r0, r1, c0, c1 in chunks(rows, k, target):
        xs, o = xr[r0:r1, c0:c1], out_rows[r0:r1, c0:c1]
        fitted.apply_block_(xs, o, r0, r1, scratch)
        sums.add(xs, o, r0, r1, None if dq_rows is None else dq_rows[r0:r1, c0:c1])
    if dq is None:
        dq = rv.from_rows(out_rows)
        if dq.dtype != dtype:
            dq = dq.to(dtype)
    return dq, sums


def fake_quantize(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Only the dequantized tensor of :func:`quantize` (e.g. dynamic activation quantization)."""
    return quantize(x, spec, metrics=False).dequantized


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
