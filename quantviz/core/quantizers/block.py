"""Block-scaled formats: OCP Microscaling (MX v1.0) and NVIDIA NVFP4.

Each row of the row view is one block (``per_group`` with the format's block size, along
the last axis of the ``[shape[0], numel / shape[0]]`` view: a weight's reduction axis).

OCP MX (``mxfp8_e4m3``, ``mxfp6_e3m2``, ``mxfp6_e2m3``, ``mxfp4``, ``mxint8``): blocks of
32 share one E8M0 scale ``X = 2^(floor(log2(amax)) - emax_elem)`` (amax: the block's
largest magnitude; emax_elem: the exponent of the element format's largest normal, 8 for
E4M3, 4 for E3M2, 2 for E2M3 and E2M1, 0 for INT8), clamped to E8M0's range
``2^-127 .. 2^127`` (an all-zero block gets ``2^-127``). Elements are ``x / X`` rounded to
the nearest element value, ties to even, saturating at the largest normal. MXINT8 elements
are 8-bit two's complement with an implicit scale ``2^-6`` (``k / 64``); they saturate
at the largest normal ``127/64`` on both sides, so ``-128/64`` is never produced (as the
spec's symmetric saturation and Microsoft's reference library do).

NVFP4: blocks of 16 E2M1 elements; one FP32 scale per tensor ``s = amax / (6 * 448)`` and
per block the E4M3 scale ``e = fp8_e4m3(block_amax / (6 * s))`` (round to nearest even,
torch's ``float8_e4m3fn`` cast; at most 448 by construction). The block's effective scale
is ``e * s`` (float32); a block whose E4M3 scale rounds to zero is all zeros.

The elements are rounded with ``x / scale`` computed as a float32 division (exact for the
MX powers of two) and the float format kernel of :mod:`.codebook`.
"""

from __future__ import annotations

from typing import Any

import torch

from quantviz.core.quantizers.codebook import (
    ELEMENT_FORMATS,
    MXINT8_MAX_CODE,
    ScaledCodebookFitted,
    _round_float_format_,
)
from quantviz.core.spec import QuantSpec

__all__ = ["MX_EMAX", "BlockFitted", "fit_block"]

#: emax_elem of the OCP MX formats: the exponent of the element's largest normal
MX_EMAX: dict[str, int] = {
    "mxfp8_e4m3": 8,
    "mxfp6_e3m2": 4,
    "mxfp6_e2m3": 2,
    "mxfp4": 2,
    "mxint8": 0,
}

E8M0_MIN_EXP, E8M0_MAX_EXP = -127, 127
E4M3_MAX = 448.0
FP4_MAX = 6.0


def _mx_scales(amax: torch.Tensor, emax: int) -> torch.Tensor:
    """E8M0 scales ``2^(floor(log2(amax)) - emax)`` [R] (float32, exact powers of two)."""
    _, e = torch.frexp(amax.to(torch.float32))  # amax = m * 2^e, m in [0.5, 1): floor = e - 1
    exp = (e - 1 - emax).to(torch.float64)
    exp = torch.where(amax > 0, exp, torch.full_like(exp, E8M0_MIN_EXP))
    exp = exp.clamp(E8M0_MIN_EXP, E8M0_MAX_EXP)
    return torch.pow(2.0, exp).to(torch.float32)


def _nvfp4_scales(amax: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Per-block effective scales ``e4m3 * s_tensor`` [R] and the tensor scale ``s``."""
    amax = amax.to(torch.float32)
    t_amax = float(amax.max())
    s = torch.tensor(t_amax / (FP4_MAX * E4M3_MAX) if t_amax > 0 else 1.0, dtype=torch.float32)
    block = (amax / (FP4_MAX * s)).clamp(max=E4M3_MAX)
    e4m3 = block.to(torch.float8_e4m3fn).to(torch.float32)
    return e4m3 * s, float(s)


class BlockFitted(ScaledCodebookFitted):
    """A block format fitted: element levels times one float32 scale per block (row).

    ``tensor_scale`` is NVFP4's per-tensor FP32 scale (``None`` for MX).
    """

    def __init__(self, spec: QuantSpec, scale: torch.Tensor, tensor_scale: float | None = None):
        super().__init__(spec, scale)
        self.tensor_scale = tensor_scale
        self._safe = torch.where(self._s > 0, self._s, torch.ones_like(self._s))

    def scratch(self, n: int) -> Any:
        return torch.empty(n)

    def apply_block_(
        self, x: torch.Tensor, out: torch.Tensor, r0: int, r1: int, scratch: Any
    ) -> None:
        q = self.spec.quantizer
        o = out
        torch.div(x, self._safe[r0:r1, None], out=o)
        if q == "mxint8":
            o.mul_(64.0).round_().clamp_(-MXINT8_MAX_CODE, MXINT8_MAX_CODE).div_(64.0)
        else:
            _round_float_format_(o, scratch[: o.numel()].view(o.shape), *ELEMENT_FORMATS[q])
        o.mul_(self._s[r0:r1, None])  # a zero scale (NVFP4) makes the block zero


def fit_block(spec: QuantSpec, mn: torch.Tensor, mx: torch.Tensor) -> BlockFitted:
    """Fit a block format to blocks with minima ``mn`` / maxima ``mx`` [R]."""
    amax = torch.maximum(mn.abs(), mx.abs()).to(torch.float32)
    if spec.quantizer == "nvfp4":
        scale, s = _nvfp4_scales(amax)
        return BlockFitted(spec, scale, s)
    return BlockFitted(spec, _mx_scales(amax, MX_EMAX[spec.quantizer]))
