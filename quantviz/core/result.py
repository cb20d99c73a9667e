"""What :func:`quantviz.core.quantize` returns: the dequantized tensor, its levels and
parameters, and the error numbers computed on first access."""

from __future__ import annotations

import math
from functools import cached_property

import torch

from quantviz.core.quantizers.base import Fitted, RowView, chunk_target, chunks, kernel_threads
from quantviz.core.spec import QuantSpec

__all__ = ["QuantResult"]


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
        row_min: torch.Tensor | None = None,
        row_max: torch.Tensor | None = None,
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
        with kernel_threads(self._xr.numel()):
            return self._compute_metrics()

    def _compute_metrics(self) -> tuple[float, float, float]:
        rv = self.row_view
        xr = self._xr  # the input's rows in float32
        dq = self.dequantized
        convert = dq.dtype != torch.float32  # measure what the caller gets: its own dtype
        if not convert:
            dr = self._out_rows
        elif rv.granularity == "per_channel" and rv.axis != 0:
            dr, convert = rv.to_rows(dq), False
        else:  # converted a chunk at a time: no float32 copy of the whole output
            dr = dq.reshape(rv.rows, rv.row_len)
        # a hair of tolerance: a scale computed as max/levels can put the max value one ulp
        # beyond the top level; that is rounding, not clipping
        lo, hi = (b.to(torch.float32) for b in self._bounds)
        tol = 2.0**-20 * torch.maximum(lo.abs(), hi.abs())
        lo, hi = lo - tol, hi + tol
        rows, k = xr.shape
        # rows whose extremes lie inside their range clip nothing on that side: skip them
        # (symmetric grids never clip below, NF4 and minmax grids hardly at all)
        need_lo = need_hi = None
        if self._row_min is not None and self._row_max is not None:
            need_lo = (self._row_min.reshape(-1) < lo).tolist()
            need_hi = (self._row_max.reshape(-1) > hi).tolist()
        sse = sig = 0.0
        clipped = 0
        target = chunk_target()
        tmp = torch.empty(min(xr.numel(), target))
        flags = torch.empty(tmp.numel(), dtype=torch.bool)
        for r0, r1, c0, c1 in chunks(rows, k, target):
            xs = xr[r0:r1, c0:c1]
            e = tmp[: xs.numel()].view(xs.shape)
            if convert:
                e.copy_(dr[r0:r1, c0:c1])
                e.sub_(xs)
            else:
                torch.sub(dr[r0:r1, c0:c1], xs, out=e)
            ef = e.reshape(-1)
            sse += float(torch.dot(ef, ef))
            xf = xs.reshape(-1) if xs.is_contiguous() else xs.contiguous().reshape(-1)
            sig += float(torch.dot(xf, xf))
            f = flags[: xs.numel()].view(xs.shape)
            if need_lo is None or any(need_lo[r0:r1]):
                torch.lt(xs, lo[r0:r1, None], out=f)
                clipped += int(torch.count_nonzero(f))
            if need_hi is None or any(need_hi[r0:r1]):
                torch.gt(xs, hi[r0:r1, None], out=f)
                clipped += int(torch.count_nonzero(f))
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
