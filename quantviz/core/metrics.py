"""Error metrics between a tensor and its quantized version, and the weight histogram."""

from __future__ import annotations

import math

import torch

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


def histogram(
    x: torch.Tensor, bins: int = 256, lo: float | None = None, hi: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(counts [bins], edges [bins + 1])`` of ``x`` over ``[lo, hi]`` (default: its range).

    Uses ``torch.histc`` (several times faster than ``np.histogram`` on large tensors).
    """
    if bins < 1:
        raise ValueError(f"bins: must be >= 1, got {bins}")
    v = x.detach().reshape(-1)
    if v.numel() == 0:
        raise ValueError("tensor is empty")
    if v.dtype != torch.float32:
        v = v.to(torch.float32)
    if lo is None or hi is None:
        mn, mx = torch.aminmax(v)
        lo = float(mn) if lo is None else lo
        hi = float(mx) if hi is None else hi
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("tensor contains NaN or inf values")
    if hi <= lo:
        pad = max(abs(lo) * 1e-3, 1e-6)
        lo, hi = lo - pad, hi + pad
    counts = torch.histc(v, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    return counts, edges
