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
from quantviz.core.quantizers.base import Fitted, kernel_threads, row_view
from quantviz.core.result import QuantResult
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
        fitted.apply_(xr, out_rows)
        dq = rv.from_rows(out_rows)
        if dq.dtype != x.dtype:
            dq = dq.to(x.dtype)
    return QuantResult(x, spec, rv, fitted, xr, out_rows, dq, mn, mx)


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
