"""What :func:`quantviz.core.quantize` returns: the dequantized tensor, its levels and
parameters, and the error numbers computed on first access."""

from __future__ import annotations

import math
from functools import cached_property

import torch

from quantviz.core.quantizers.base import Fitted, RowView, chunk_target, chunks, kernel_threads
from quantviz.core.spec import QuantSpec

__all__ = ["MetricSums", "QuantResult"]


class MetricSums:
    """Sums of squares of signal and error and the clipped count, block by block.

    :func:`quantviz.core.quantize` feeds it each block right after quantizing it (while the
    block is in cache), so the metrics cost little more than the quantization. The error is
    that of the output in the caller's dtype (a 16-bit output is rounded block by block:
    ``dq_block`` receives it when given). Sums in float32 per block, added in float64.
    """

    def __init__(
        self,
        fitted: Fitted,
        dtype: torch.dtype,
        row_min: torch.Tensor | None,
        row_max: torch.Tensor | None,
        block: int,
    ) -> None:
        self.dtype = dtype
        self.convert = dtype != torch.float32
        # a hair of tolerance: a scale computed as max/levels can put the max value one ulp
        # beyond the top level; that is rounding, not clipping
        lo, hi = (b.to(dtype).to(torch.float32) for b in fitted.bounds())
        tol = 2.0**-20 * torch.maximum(lo.abs(), hi.abs())
        self.lo, self.hi = lo - tol, hi + tol
        # rows whose extremes lie inside their range clip nothing on that side: skip them
        # (symmetric grids never clip below, NF4 and minmax grids hardly at all)
        self.need_lo: list[bool] | None = None
        self.need_hi: list[bool] | None = None
        if row_min is not None and row_max is not None:
            self.need_lo = (row_min.reshape(-1) < self.lo).tolist()
            self.need_hi = (row_max.reshape(-1) > self.hi).tolist()
        self.tmp = torch.empty(block)
        self.flags = torch.empty(block, dtype=torch.bool)
        self.low = torch.empty(block, dtype=dtype) if self.convert else None
        self.sse = self.sig = 0.0
        self.clipped = self.n = 0

    def add(
        self,
        xs: torch.Tensor,
        o: torch.Tensor,
        r0: int,
        r1: int,
        dq_block: torch.Tensor | None = None,
    ) -> None:
        """Count block ``xs`` (float32 input rows ``r0:r1``) quantized to ``o`` (float32)."""
        n = xs.numel()
        e = self.tmp[:n].view(xs.shape)
        if self.convert:
            if dq_block is None:
                assert self.low is not None
                dq_block = self.low[:n].view(xs.shape)
            dq_block.copy_(o)  # the caller's dtype
            e.copy_(dq_block)
            e.sub_(xs)
        else:
            torch.sub(o, xs, out=e)
        ef = e.reshape(-1)
        self.sse += float(torch.dot(ef, ef))
        xf = xs.reshape(-1) if xs.is_contiguous() else xs.contiguous().reshape(-1)
        self.sig += float(torch.dot(xf, xf))
        f = self.flags[:n].view(xs.shape)
        if self.need_lo is None or any(self.need_lo[r0:r1]):
            torch.lt(xs, self.lo[r0:r1, None], out=f)
            self.clipped += int(torch.count_nonzero(f))
        if self.need_hi is None or any(self.need_hi[r0:r1]):
            torch.gt(xs, self.hi[r0:r1, None], out=f)
            self.clipped += int(torch.count_nonzero(f))
        self.n += n

    def result(self) -> tuple[float, float, float]:
        """``(mse, sqnr_db, clipped_fraction)`` of the blocks added."""
        n = max(self.n, 1)
        sse, sig = self.sse, self.sig
        sqnr = math.inf if sse == 0.0 else 10.0 * math.log10(max(sig, 1e-300) / sse)
        return sse / n, sqnr, self.clipped / n


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

    The metrics are measured in the quantize pass (block by block, see :class:`MetricSums`;
    on first access in a pass of their own for ``quantize(..., metrics=False)``):
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
        xr: torch.Tensor | None,
        out_rows: torch.Tensor | None,
        dequantized: torch.Tensor,
        row_min: torch.Tensor | None = None,
        row_max: torch.Tensor | None = None,
        metrics: tuple[float, float, float] | None = None,
    ):
        self.spec = spec
        self.row_view = rv
        self.fitted = fitted
        self.dequantized = dequantized
        self._x = x
        self._xr = xr
        self._out_rows = out_rows
        self._row_min = row_min
        self._row_max = row_max
        self._fused = metrics

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

    def row_levels(self, row: int) -> torch.Tensor:
        """``levels[row]`` (``levels`` per tensor) without building the whole table."""
        if self.row_view.granularity == "per_tensor":
            return self.levels
        return self.fitted.row_levels(row).to(self.dequantized.dtype)

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
        if self._fused is not None:  # measured in the quantize pass
            return self._fused
        with kernel_threads(self.dequantized.numel()):
            return self._compute_metrics()

    def _compute_metrics(self) -> tuple[float, float, float]:
        """The metrics in a pass of their own (a result made with ``metrics=False``)."""
        xr, rows_out = self._xr, self._out_rows
        if xr is None or rows_out is None:  # pragma: no cover - streamed results are measured
            raise RuntimeError("metrics: the input rows were not kept")
        rows, k = xr.shape
        target = chunk_target()
        m = MetricSums(self.fitted, self.dequantized.dtype, self._row_min, self._row_max, target)
        for r0, r1, c0, c1 in chunks(rows, k, target):
            m.add(xr[r0:r1, c0:c1], rows_out[r0:r1, c0:c1], r0, r1)
        return m.result()

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
