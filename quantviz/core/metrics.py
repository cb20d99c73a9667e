"""Error metrics between a tensor and its quantized version, and the weight histogram."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from quantviz.core.quantizers.base import kernel_threads

__all__ = ["clipped_fraction", "histogram", "mse", "sqnr_db"]


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {list(x.shape)} vs {list(y.shape)}")
    return x.detach().double().reshape(-1), y.detach().double().reshape(-1)


def mse(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error (computed in float64)."""
    a, b = _pair(x, y)
    return float(torch.mean((a - b) ** 2))


def sqnr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio of ``y`` as an approximation of ``x``, in dB."""
    a, b = _pair(x, y)
    err = float(torch.sum((a - b) ** 2))
    if err == 0.0:
        return math.inf
    return 10.0 * math.log10(max(float(torch.sum(a * a)), 1e-300) / err)


def clipped_fraction(x: torch.Tensor, lo: float, hi: float) -> float:
    """Fraction of the values of ``x`` outside ``[lo, hi]``."""
    if x.numel() == 0:
        raise ValueError("tensor is empty")
    return float(((x < lo) | (x > hi)).sum()) / x.numel()


#: values per block of the streamed histogram (a few MB of temporaries per block)
HIST_BLOCK = 1 << 20


def _range(v: torch.Tensor, lo: float | None, hi: float | None) -> tuple[float, float]:
    if lo is None or hi is None:
        mn, mx = torch.aminmax(v)  # in the tensor's own dtype: exact, no float32 copy
        lo = float(mn) if lo is None else lo
        hi = float(mx) if hi is None else hi
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("tensor contains NaN or inf values")
    if hi <= lo:
        pad = max(abs(lo) * 1e-3, 1e-6)
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _blocks(v: torch.Tensor, block: int) -> Iterator[torch.Tensor]:
    for s in range(0, v.numel(), block):
        yield v[s : s + block]


def _counts_16bit(v: torch.Tensor, edges: np.ndarray, block: int) -> np.ndarray:
    """Counts of a float16/bfloat16 ``v``: a 16-bit tensor has at most 65536 distinct
    values, so count each bit pattern (``bincount``, block by block), then bin the
    distinct values weighted by their counts (``np.histogram``: exactly its bins)."""
    acc = torch.zeros(1 << 16, dtype=torch.int64)
    buf = torch.empty(min(v.numel(), block), dtype=torch.int32)
    for c in _blocks(v.view(torch.int16), block):
        b = buf[: c.numel()]
        b.copy_(c)
        b.bitwise_and_(0xFFFF)
        acc += torch.bincount(b, minlength=1 << 16)
    nz = torch.nonzero(acc).reshape(-1)
    vals = nz.to(torch.int32).to(torch.int16).view(v.dtype).double().numpy()
    counts, _ = np.histogram(vals, bins=edges, weights=acc[nz].double().numpy())
    return counts


def _counts_float(v: torch.Tensor, edges: np.ndarray, block: int, inside: bool) -> np.ndarray:
    """Counts of a float32/float64 ``v`` in ``np.histogram``'s bins (``[e_i, e_i+1)``, the
    last one closed), block by block: the bin from the linear formula, then corrected by
    one against the edges, as ``np.histogram`` does. For float32 the float64 edges are
    replaced by the smallest float32 at or above each (``x >= e`` is then the same test
    for every float32 ``x``), so no block is widened to float64. ``inside``: every value
    lies in ``[edges[0], edges[-1]]`` (the range is the tensor's own)."""
    bins = edges.size - 1
    dt = v.dtype if v.dtype == torch.float64 else torch.float32
    if dt == torch.float32:
        e32 = edges.astype(np.float32)
        e32 = np.where(e32 < edges, np.nextafter(e32, np.float32(np.inf)), e32)
        e = torch.from_numpy(e32.astype(np.float32))
    else:
        e = torch.from_numpy(edges.copy())
    lo = float(e[0])
    # the largest value of the block's dtype at or below the top edge: x > top <=> x > hi
    top = edges[-1] if dt == torch.float64 else np.float32(edges[-1])
    hi = float(top if top <= edges[-1] else np.nextafter(top, np.float32(-np.inf)))
    upper = e[1:].clone()
    upper[-1] = float("inf")  # the last bin is closed
    low = e[:-1].contiguous()
    norm = bins / (float(edges[-1]) - float(edges[0]))
    acc = torch.zeros(bins + 1, dtype=torch.int64)  # the extra bin collects values outside
    n = min(v.numel(), block)
    t = torch.empty(n, dtype=dt)
    idx, m, m2 = (torch.empty(n, dtype=d) for d in (torch.int64, torch.bool, torch.bool))
    for c in _blocks(v, block):
        k = c.numel()
        tt, ii, mm, mm2 = t[:k], idx[:k], m[:k], m2[:k]
        torch.sub(c, lo, out=tt)
        tt.mul_(norm)
        tt.clamp_(0.0, bins - 1)
        ii.copy_(tt)  # truncation: tt >= 0
        torch.index_select(low, 0, ii, out=tt)
        torch.lt(c, tt, out=mm)
        ii.sub_(mm.to(torch.int64))
        ii.clamp_(min=0)
        torch.index_select(upper, 0, ii, out=tt)
        torch.ge(c, tt, out=mm)
        ii.add_(mm.to(torch.int64))
        if not inside:
            torch.lt(c, lo, out=mm)  # outside [lo, hi]: the extra bin
            torch.gt(c, hi, out=mm2)
            mm.logical_or_(mm2)
            ii.masked_fill_(mm, bins)
        acc += torch.bincount(ii, minlength=bins + 1)
    return acc[:bins].double().numpy()


def histogram(
    x: torch.Tensor,
    bins: int = 256,
    lo: float | None = None,
    hi: float | None = None,
    *,
    block: int = HIST_BLOCK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(counts float64 [bins], edges float64 [bins + 1])`` of ``x`` over ``[lo, hi]``
    (default: its range); values outside are not counted.

    Exactly ``np.histogram(x, bins=edges)`` (bins ``[e_i, e_i+1)``, the last one closed,
    ``edges = np.linspace(lo, hi, bins + 1)``), streamed over blocks of ``block`` values:
    no sort, and no float32 copy of a 16-bit tensor (whose histogram comes from the counts
    of its at most 65536 distinct values).
    """
    if bins < 1:
        raise ValueError(f"bins: must be >= 1, got {bins}")
    v = x.detach().reshape(-1)
    if v.numel() == 0:
        raise ValueError("tensor is empty")
    if v.device.type != "cpu":
        v = v.cpu()
    if not v.is_floating_point():
        v = v.to(torch.float64)
    inside = lo is None and hi is None
    with kernel_threads(v.numel()):  # one thread for small tensors or a busy machine
        lo, hi = _range(v, lo, hi)
        edges = np.linspace(lo, hi, bins + 1)
        if v.dtype in (torch.float16, torch.bfloat16):
            counts = _counts_16bit(v, edges, block)
        else:
            counts = _counts_float(v, edges, block, inside)
    return torch.from_numpy(np.ascontiguousarray(counts, dtype=np.float64)), torch.from_numpy(edges)
