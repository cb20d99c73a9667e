"""Non-uniform grids: scaled fixed codebooks (log2, FP8, FP4, NF4) and learned ones (k-means).

A *scaled codebook* has base levels ``B`` (sorted, sign-symmetric, containing 0) and one
float32 scale per row: the row's levels are ``B * scale`` and the clipping range
``[-max(B) * scale, max(B) * scale]`` is what calibration chooses (``scale = a / max(B)``
for a clipping magnitude ``a``).

Fast kernels (no search per value) where the format allows:

* FP formats round to ``m`` mantissa bits with the step
  ``2^(floor(log2 max(|x|, min_normal)) - m)``, obtained by masking the float32 exponent
  bits; saturating at the format's maximum
  (OCP FP8 "satfinite" behaviour; FP4 E2M1 has no inf/NaN anyway). Round half to even.
* log2 picks the nearest power of two in the linear domain (mantissa >= 1.5 rounds up) by
  adding half a mantissa to the float32 bit pattern, then clamps the exponent range; values
  below half the smallest power map to zero.
* Other codebooks (NF4, k-means) find the nearest level over the midpoints between levels
  (ties go to the lower level): a lookup table for one shared codebook, a bisection per
  row for per-row codebooks.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from quantviz.core.quantizers.base import Fitted
from quantviz.core.spec import BLOCK_FORMATS, QuantSpec

__all__ = [
    "ELEMENT_FORMATS",
    "CodebookFitted",
    "ScaledCodebookFitted",
    "base_levels",
    "block_element_levels",
]

#: QLoRA's NormalFloat-4 levels (Dettmers et al. 2023, bitsandbytes ``create_normal_map``)
NF4_LEVELS = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)

#: (exponent bits, mantissa bits, exponent bias, max finite value) of the float formats
FLOAT_FORMATS = {
    "fp8_e4m3": (4, 3, 7, 448.0),  # OCP E4M3FN: no inf, S.1111.111 is NaN
    "fp8_e5m2": (5, 2, 15, 57344.0),  # OCP E5M2: IEEE-like, inf/NaN in the top exponent
    "fp4_e2m1": (2, 1, 1, 6.0),  # OCP MX FP4: no inf/NaN
}


#: element float format of each block format: (exponent bits, mantissa bits, bias, max normal)
ELEMENT_FORMATS: dict[str, tuple[int, int, int, float]] = {
    "mxfp8_e4m3": FLOAT_FORMATS["fp8_e4m3"],
    "mxfp6_e3m2": (3, 2, 3, 28.0),
    "mxfp6_e2m3": (2, 3, 1, 7.5),
    "mxfp4": FLOAT_FORMATS["fp4_e2m1"],
    "nvfp4": FLOAT_FORMATS["fp4_e2m1"],
}

#: MXINT8 codes are -127..127 (saturating at the largest normal, 127/64)
MXINT8_MAX_CODE = 127


def block_element_levels(quantizer: str) -> tuple[float, ...]:
    """The element values a block format produces (before its scale), sorted ascending."""
    if quantizer == "mxint8":
        return tuple(
            (np.arange(-MXINT8_MAX_CODE, MXINT8_MAX_CODE + 1, dtype=np.float64) / 64).tolist()
        )
    e_bits, m_bits, bias, fmax = ELEMENT_FORMATS[quantizer]
    vals = {0.0}
    for e in range(2**e_bits):
        for m in range(2**m_bits):
            v = (m / 2**m_bits if e == 0 else 1 + m / 2**m_bits) * 2.0 ** (max(e, 1) - bias)
            if v <= fmax:
                vals.add(v)
    pos = np.array(sorted(vals))
    return tuple(np.concatenate([-pos[:0:-1], pos]).tolist())


def _float_format_values(e_bits: int, m_bits: int, bias: int, fmax: float) -> np.ndarray:
    """All finite non-negative values of a float format up to ``fmax``."""
    vals = {0.0}
    for e in range(2**e_bits):
        for m in range(2**m_bits):
            if e == 0:
                v = (m / 2**m_bits) * 2.0 ** (1 - bias)
            else:
                v = (1 + m / 2**m_bits) * 2.0 ** (e - bias)
            if v <= fmax:
                vals.add(v)
    return np.array(sorted(vals))


@functools.lru_cache(maxsize=64)
def _base_levels_cached(quantizer: str, bits: int) -> tuple[float, ...]:
    if quantizer == "nf4":
        return NF4_LEVELS
    if quantizer in BLOCK_FORMATS:
        return block_element_levels(quantizer)
    if quantizer in FLOAT_FORMATS:
        pos = _float_format_values(*FLOAT_FORMATS[quantizer])
        return tuple(np.concatenate([-pos[:0:-1], pos]).tolist())
    if quantizer == "log2":
        n = 2 ** (bits - 1) - 1  # magnitudes 2^0 .. 2^-(n-1), plus zero, times the sign
        pos = 2.0 ** -np.arange(n - 1, -1, -1, dtype=np.float64)
        return tuple(np.concatenate([-pos[::-1], [0.0], pos]).tolist())
    raise ValueError(f"quantizer: {quantizer!r} has no fixed codebook")


def base_levels(spec: QuantSpec) -> np.ndarray:
    """Sorted base levels (float64) of a scaled codebook; the top level is 1 or the format max."""
    return np.array(_base_levels_cached(spec.quantizer, spec.bits))


#: bins of the lookup table that finds a value's place in a shared codebook
LUT_BINS = 1 << 12


class _CodebookLUT:
    """Nearest-level search in one sorted codebook by a lookup table, exact.

    A value's bin is ``clamp((x - a) * inv_w, 0, N - 1)`` truncated to an integer: float32
    ops that are each monotone, so the bin is monotone in ``x``. The midpoints between
    levels are binned by the very same ops when the table is built, so a midpoint in a lower
    bin than ``x`` is below ``x`` and one in a higher bin is above it; with at most one
    midpoint per bin, ``index = below[bin] + (x > mid_in[bin])`` is exactly the number of
    midpoints strictly below ``x`` (ties to the lower level), as ``bucketize`` computes it,
    for a fraction of its cost (a few streaming ops instead of a binary search per value).
    ``build`` returns None when two midpoints share a bin (then use ``bucketize``).
    """

    def __init__(self, a: float, inv_w: float, below: torch.Tensor, mid_in: torch.Tensor):
        self.a, self.inv_w = a, inv_w
        self.below, self.mid_in = below, mid_in
        self.top = float(below.numel() - 1)

    @staticmethod
    def _bin(x: torch.Tensor, a: float, inv_w: float, top: float, f: torch.Tensor) -> None:
        torch.sub(x, a, out=f)
        f.mul_(inv_w)
        f.clamp_(0.0, top)

    @classmethod
    def build(cls, mids: torch.Tensor, n: int = LUT_BINS) -> _CodebookLUT | None:
        mids = mids.to(torch.float32).contiguous()
        lo, hi = float(mids[0]), float(mids[-1])
        span = hi - lo
        if not (span > 0 and torch.isfinite(mids).all()):
            return None
        inv_w = float(torch.tensor((n - 2) / span, dtype=torch.float32))
        a = float(torch.tensor(lo - span / (n - 2), dtype=torch.float32))
        f = torch.empty_like(mids)
        cls._bin(mids, a, inv_w, float(n - 1), f)
        mb = f.to(torch.int64)
        counts = torch.bincount(mb, minlength=n)
        if int(counts.max()) > 1:
            return None
        below = (torch.cumsum(counts, 0) - counts).to(torch.int32)
        mid_in = torch.full((n,), float("inf"), dtype=torch.float32)
        mid_in[mb] = mids
        lut = cls(a, inv_w, below, mid_in)
        # the midpoints and their float neighbours, binned by the vectorised kernels too
        probe = torch.cat(
            [mids, torch.nextafter(mids, mids - 1), torch.nextafter(mids, mids + 1)]
        ).repeat(max(1, 1024 // (3 * mids.numel())))
        got = lut.index(probe, _Scratch(probe.numel()))
        if not torch.equal(got, torch.bucketize(probe, mids, out_int32=True)):
            return None  # pragma: no cover - a kernel rounded differently from the build
        return lut

    def index(self, x: torch.Tensor, s: _Scratch) -> torch.Tensor:
        """The codebook index (int32) of each value of the 1-D ``x``, in ``s``'s buffers."""
        n = x.numel()
        f, bins, idx, b = s.f[:n], s.bins[:n], s.idx[:n], s.b[:n]
        self._bin(x, self.a, self.inv_w, self.top, f)
        bins.copy_(f)  # truncation: f >= 0
        torch.index_select(self.mid_in, 0, bins, out=f)
        torch.gt(x, f, out=b)  # the bin's midpoint is below the value
        torch.index_select(self.below, 0, bins, out=idx)
        idx.add_(b)
        return idx


class _Scratch:
    """Reused buffers of ``n`` elements for :meth:`_CodebookLUT.index`."""

    def __init__(self, n: int):
        self.f = torch.empty(n)
        self.bins = torch.empty(n, dtype=torch.int32)
        self.idx = torch.empty(n, dtype=torch.int32)
        self.b = torch.empty(n, dtype=torch.bool)


def _nearest_in_codebook(
    x: torch.Tensor,
    levels: torch.Tensor,
    out: torch.Tensor,
    lut: _CodebookLUT | None = None,
    scratch: _Scratch | None = None,
) -> None:
    """``out[r, i]`` = the level of row r nearest to ``x[r, i]`` (levels sorted, [R, L] or [1, L]).

    Ties go to the lower level: the index is the number of midpoints strictly below the
    value. One shared codebook uses ``lut`` (built from its midpoints, see
    :class:`_CodebookLUT`) or ``bucketize``; per-row codebooks a bisection per row
    (:func:`_row_search`).
    ``out`` may be ``x``.
    """
    if levels.shape[0] == 1:
        lv = levels[0].contiguous()
        flat = x.reshape(-1)
        n = flat.numel()
        if lut is not None:
            if scratch is None or scratch.f.numel() < n:
                scratch = _Scratch(n)
            idx = lut.index(flat, scratch)
        else:
            mids = 0.5 * (lv[1:] + lv[:-1])
            idx = torch.bucketize(flat, mids, out_int32=True)
        if out.is_contiguous():
            torch.index_select(lv, 0, idx, out=out.view(-1))
        else:
            out.copy_(lv[idx].view(out.shape))
    else:
        torch.gather(levels, 1, _row_search(x, _padded_mids(levels)), out=out)


def _padded_mids(levels: torch.Tensor) -> torch.Tensor:
    """The midpoints between each row's levels [R, L-1], padded with +inf to [R, P] (P the
    power of two >= L) for :func:`_row_search`."""
    r, n = levels.shape
    p = 1 << max(0, (n - 1).bit_length())
    pad = torch.full((r, p), float("inf"), dtype=levels.dtype)
    torch.add(levels[:, 1:], levels[:, :-1], out=pad[:, : n - 1])
    pad[:, : n - 1].mul_(0.5)
    return pad


def _row_search(x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """Per row, the number of midpoints strictly below each value of ``x`` [R, K] (what
    ``searchsorted(mids, x)`` returns: ties go to the lower level), int64 [R, K].

    A branchless bisection over each row's own short table (``pad`` from
    :func:`_padded_mids`): log2(P) rounds of gather / compare / add over the block, ~2x
    faster than ``searchsorted`` with per-row sequences.
    """
    pos = torch.zeros(x.shape, dtype=torch.int64)
    cand = torch.empty_like(pos)
    v = torch.empty(x.shape, dtype=pad.dtype)
    m = torch.empty(x.shape, dtype=torch.bool)
    step = pad.shape[1] // 2
    while step >= 1:
        torch.add(pos, step - 1, out=cand)
        torch.gather(pad, 1, cand, out=v)
        torch.lt(v, x, out=m)
        pos.add_(m, alpha=step)
        step //= 2
    return pos


def _shared_lut(levels: torch.Tensor) -> _CodebookLUT | None:
    """The lookup table of a one-row codebook ``levels`` [1, L] (None: use ``bucketize``)."""
    if levels.shape[0] != 1 or levels.shape[1] < 2:
        return None
    lv = levels[0]
    return _CodebookLUT.build(0.5 * (lv[1:] + lv[:-1]))


class CodebookFitted(Fitted):
    """An explicit codebook per row (k-means): levels float32 [R, L], sorted."""

    def __init__(self, levels: torch.Tensor):
        self._levels = levels.to(torch.float32).contiguous()

        self._lut = _shared_lut(self._levels)

    def scratch(self, n: int) -> Any:
        return _Scratch(n) if self._lut is not None else None

    def apply_block_(
        self, x: torch.Tensor, out: torch.Tensor, r0: int, r1: int, scratch: Any
    ) -> None:
        _nearest_in_codebook(x, self._levels[r0:r1], out, self._lut, scratch)

    def levels(self) -> torch.Tensor:
        return self._levels


class ScaledCodebookFitted(Fitted):
    """Base levels times a per-row float32 scale (log2, FP8, FP4, NF4)."""

    def __init__(self, spec: QuantSpec, scale: torch.Tensor):
        self.spec = spec
        self._s = scale.to(torch.float32).reshape(-1)
        self.scale = self._s
        self._inv = torch.reciprocal(self._s)
        self._base = torch.tensor(base_levels(spec), dtype=torch.float32)
        q = spec.quantizer
        self._lut: _CodebookLUT | None = None
        if q not in FLOAT_FORMATS and q != "log2" and q not in BLOCK_FORMATS:
            self._lut = _shared_lut(self._base[None, :])

    def levels(self) -> torch.Tensor:
        return self._base[None, :] * self._s[:, None]

    def row_levels(self, row: int) -> torch.Tensor:
        return self._base * self._s[row]

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._base[0] * self._s, self._base[-1] * self._s

    def scratch(self, n: int) -> Any:
        q = self.spec.quantizer
        if q in FLOAT_FORMATS or q == "log2":
            return torch.empty(n)
        return _Scratch(n)

    def apply_block_(
        self, x: torch.Tensor, out: torch.Tensor, r0: int, r1: int, scratch: Any
    ) -> None:
        q = self.spec.quantizer
        o = out
        torch.mul(x, self._inv[r0:r1, None], out=o)  # into the base codebook's units
        if q in FLOAT_FORMATS:
            _round_float_format_(o, scratch[: o.numel()].view(o.shape), *FLOAT_FORMATS[q])
        elif q == "log2":
            _round_log2_(o, scratch[: o.numel()].view(o.shape), self.spec.bits)
        else:
            _nearest_in_codebook(o, self._base[None, :], o, self._lut, scratch)
        o.mul_(self._s[r0:r1, None])


_EXP_MASK = 0x7F800000


def _round_float_format_(
    v: torch.Tensor, t: torch.Tensor, e_bits: int, m_bits: int, bias: int, fmax: float
) -> None:
    """Round ``v`` in place to the nearest value of a float format (RNE), saturating."""
    min_normal = 2.0 ** (1 - bias)
    torch.abs(v, out=t)
    t.clamp_(min=min_normal)
    ti = t.view(torch.int32)
    ti.bitwise_and_(_EXP_MASK)  # t = 2^floor(log2(max(|v|, min_normal)))
    t.mul_(2.0**-m_bits)  # the spacing of the format at that exponent
    v.div_(t)  # exact: t is a power of two
    v.round_()
    v.mul_(t)
    v.clamp_(-fmax, fmax)


def _round_log2_(v: torch.Tensor, t: torch.Tensor, bits: int) -> None:
    """Replace ``v`` in place by the nearest of 0, ±2^-k (k = 0 .. 2^(b-1) - 2)."""
    n = 2 ** (bits - 1) - 1
    smallest = 2.0 ** -(n - 1)
    torch.abs(v, out=t)
    zero = t < 0.5 * smallest  # below half the smallest power of two, zero is nearer
    ti = t.view(torch.int32)
    ti.add_(0x00400000)  # half a mantissa: values with mantissa >= 1.5 round up
    ti.bitwise_and_(_EXP_MASK)  # nearest power of two
    t.clamp_(smallest, 1.0)
    t.masked_fill_(zero, 0.0)
    torch.copysign(t, v, out=v)
