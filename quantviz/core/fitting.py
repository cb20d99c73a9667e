"""Fitting a spec's parameters per row: clipping ranges (calibration), scales and zero
points, codebooks."""

from __future__ import annotations

import numpy as np
import torch

from quantviz.core.dist import Distribution, lloyd_rows
from quantviz.core.quantizers.base import Fitted
from quantviz.core.quantizers.block import fit_block
from quantviz.core.quantizers.codebook import (
    CodebookFitted,
    ScaledCodebookFitted,
    base_levels,
)
from quantviz.core.quantizers.uniform import (
    UniformFitted,
    uniform_levels_batch,
    uniform_qparams,
)
from quantviz.core.ranges import calibrate_row
from quantviz.core.spec import BLOCK_FORMATS, QuantSpec

__all__: list[str] = []


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
            levels_asym=lambda lo, hi: uniform_levels_batch(lo, hi, spec),
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
    if q in BLOCK_FORMATS:  # the scale rule is the format's: no calibration
        return fit_block(spec, mn, mx)
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
