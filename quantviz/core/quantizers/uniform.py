"""Uniform affine quantization, bit-identical to ``torch.ao`` observers + fake-quant.

Given a clipping range ``[lo, hi]`` per row, the scale and zero point are computed exactly
as ``torch.ao.quantization.MinMaxObserver`` / ``PerChannelMinMaxObserver`` do
(``_calculate_qparams``), and the fake-quantized value is the formula of torch's CPU kernel
``fake_quantize_per_{tensor,channel}_affine``::

    inv = 1.0f / scale
    q   = clamp(nearbyint(x * inv) + zero_point, quant_min, quant_max)
    out = (q - zero_point) * scale

run as an in-place chain over cache-sized chunks (bit-identical, ~3-5x faster than the
builtin, which allocates its output and a mask).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from quantviz.core.quantizers.base import Fitted
from quantviz.core.spec import QuantSpec

__all__ = ["UniformFitted", "uniform_levels_batch", "uniform_qparams"]

_EPS = torch.finfo(torch.float32).eps


def uniform_qparams(
    lo: torch.Tensor, hi: torch.Tensor, spec: QuantSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale float32 [R], zero_point int64 [R])`` for clipping ranges ``lo``/``hi`` [R].

    Mirrors ``torch.ao.quantization.observer.UniformQuantizationObserverBase._calculate_qparams``
    for ``per_tensor_symmetric`` / ``per_tensor_affine`` (and the per-channel variants) with a
    signed code range when symmetric and ``[0, 2^b - 1]`` when asymmetric.
    """
    qmin, qmax = spec.qrange
    lo = lo.to(torch.float32)
    hi = hi.to(torch.float32)
    min_neg = torch.minimum(lo, torch.zeros_like(lo))
    max_pos = torch.maximum(hi, torch.zeros_like(hi))
    eps = torch.tensor(_EPS, dtype=torch.float32)
    if spec.symmetric:
        max_pos = torch.maximum(-min_neg, max_pos)
        scale = max_pos / (float(qmax - qmin) / 2)
        scale = torch.maximum(scale, eps)
        zp = torch.zeros(lo.shape, dtype=torch.int64)
    else:
        scale = (max_pos - min_neg) / float(qmax - qmin)
        scale = torch.maximum(scale, eps)
        zp = qmin - torch.round(min_neg / scale).to(torch.int64)
        zp = torch.clamp(zp, qmin, qmax)
    return scale, zp


def uniform_levels_batch(lo: np.ndarray, hi: np.ndarray, spec: QuantSpec) -> np.ndarray:
    """Sorted float64 levels [S, L] for clipping ranges ``lo``/``hi`` [S]: the grids
    :func:`uniform_qparams` fits, in one call (range search scores hundreds per row)."""
    lo_t = torch.as_tensor(np.asarray(lo, dtype=np.float64), dtype=torch.float32)
    hi_t = torch.as_tensor(np.asarray(hi, dtype=np.float64), dtype=torch.float32)
    s, z = uniform_qparams(lo_t.reshape(-1), hi_t.reshape(-1), spec)
    qmin, qmax = spec.qrange
    q = np.arange(qmin, qmax + 1, dtype=np.float64)
    s64 = s.numpy().astype(np.float64)
    z64 = z.numpy().astype(np.float64)
    return (q[None, :] - z64[:, None]) * s64[:, None]


class UniformFitted(Fitted):
    """Per-row scale / zero point of an affine integer grid."""

    def __init__(self, scale: torch.Tensor, zero_point: torch.Tensor, spec: QuantSpec):
        self._s = scale.to(torch.float32).reshape(-1)
        self._zp = zero_point.to(torch.int64).reshape(-1)
        self.scale, self.zero_point = self._s, self._zp
        self.qmin, self.qmax = spec.qrange
        self._inv = torch.reciprocal(self._s)  # 1.0f / scale, as torch's kernel
        self._zpf = self._zp.to(torch.float32)
        self._has_zp = bool(torch.any(self._zp != 0))
        self._per_tensor = self._s.numel() == 1
        self._scalars = (
            (self._inv[0].item(), self._s[0].item(), self._zpf[0].item())
            if self._per_tensor
            else (0.0, 0.0, 0.0)
        )

    def apply_block_(
        self, x: torch.Tensor, out: torch.Tensor, r0: int, r1: int, scratch: Any
    ) -> None:
        qmin, qmax = float(self.qmin), float(self.qmax)
        inv: float | torch.Tensor
        sc: float | torch.Tensor
        zp: float | torch.Tensor
        if self._per_tensor:
            inv, sc, zp = self._scalars
        else:
            inv = self._inv[r0:r1, None]
            sc = self._s[r0:r1, None]
            zp = self._zpf[r0:r1, None]
        o = out
        torch.mul(x, inv, out=o)
        o.round_()
        if self._has_zp:
            o.add_(zp)
            o.clamp_(qmin, qmax)
            o.sub_(zp)
        else:
            o.clamp_(qmin, qmax)
        o.mul_(sc)

    def levels(self) -> torch.Tensor:
        q = torch.arange(self.qmin, self.qmax + 1, dtype=torch.float32)
        return (q[None, :] - self._zpf[:, None]) * self._s[:, None]

    def row_levels(self, row: int) -> torch.Tensor:
        q = torch.arange(self.qmin, self.qmax + 1, dtype=torch.float32)
        return (q - self._zpf[row]) * self._s[row]

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo = (float(self.qmin) - self._zpf) * self._s
        hi = (float(self.qmax) - self._zpf) * self._s
        return lo, hi
