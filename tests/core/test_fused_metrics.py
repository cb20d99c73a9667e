"""Metrics measured inside the quantize pass equal an independent float64 computation on
the dequantized output, and the separate pass of ``metrics=False``."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quantviz.core import QuantSpec, quantize
from quantviz.core.quantizers import base

SPECS = [
    QuantSpec(bits=8),
    QuantSpec(bits=4, granularity="per_group", group_size=32),
    QuantSpec(bits=3, symmetric=False, granularity="per_channel"),
    QuantSpec(bits=4, granularity="per_channel", axis=1),
    QuantSpec(bits=4, quantizer="nf4", granularity="per_group", group_size=64),
    QuantSpec(bits=8, quantizer="fp8_e4m3", granularity="per_channel"),
    QuantSpec(bits=3, quantizer="kmeans", granularity="per_channel"),
    QuantSpec(bits=4, calibration="mse"),
    QuantSpec(bits=8, quantizer="mxfp4", granularity="per_group", group_size=32),
]


def _reference(x: torch.Tensor, dq: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, rows):
    """MSE, SQNR (dB) and clipped fraction from scratch, in float64."""
    a, b = x.double().reshape(-1), dq.double().reshape(-1)
    sse = float(((a - b) ** 2).sum())
    sqnr = math.inf if sse == 0 else 10 * math.log10(float((a * a).sum()) / sse)
    r = rows(x.double())
    lo64, hi64 = lo.double().reshape(-1, 1), hi.double().reshape(-1, 1)
    tol = 2.0**-20 * torch.maximum(lo64.abs(), hi64.abs())
    clipped = int(((r < lo64 - tol) | (r > hi64 + tol)).sum())
    return sse / a.numel(), sqnr, clipped / a.numel()


def _check(x: torch.Tensor, spec: QuantSpec) -> None:
    r = quantize(x, spec)
    rv = r.row_view
    mse, sqnr, clip = _reference(x, r.dequantized, r.clip_min, r.clip_max, rv.to_rows)
    assert r.mse == pytest.approx(mse, rel=1e-5, abs=1e-30)
    assert r.sqnr_db == pytest.approx(sqnr, abs=1e-4)
    assert r.clipped_fraction == pytest.approx(clip, abs=1.5 / x.numel())
    lazy = quantize(x, spec, metrics=False)  # the separate pass agrees
    assert torch.equal(lazy.dequantized, r.dequantized)
    assert lazy.mse == pytest.approx(r.mse, rel=1e-6, abs=1e-30)
    assert lazy.clipped_fraction == r.clipped_fraction


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.short())
def test_fused_metrics_equal_an_independent_computation(spec, dtype, monkeypatch):
    monkeypatch.setattr(base, "CHUNK", 1000)  # many blocks, rows split across blocks
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(48, 256, generator=g) * torch.linspace(0.01, 0.2, 256)).to(dtype)
    _check(x, spec)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 12),
    cols=st.sampled_from([32, 64, 96]),
    bits=st.integers(2, 8),
    scale=st.floats(1e-3, 1e3),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    gran=st.sampled_from(["per_tensor", "per_channel", "per_group"]),
    seed=st.integers(0, 1000),
)
def test_property_fused_metrics(rows, cols, bits, scale, dtype, gran, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, cols, generator=g) * scale).to(dtype)
    spec = QuantSpec(bits=bits, granularity=gran, group_size=32)
    _check(x, spec)


def test_bf16_output_is_what_is_measured():
    """The error of a bf16 layer is that of its bf16 output, not of the float32 grid."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(64, 128, generator=g) * 0.02).to(torch.bfloat16)
    spec = QuantSpec(bits=8, granularity="per_group", group_size=128)
    r = quantize(x, spec)
    assert r.dequantized.dtype == torch.bfloat16
    d = (x.double() - r.dequantized.double()).reshape(-1)
    assert r.mse == pytest.approx(float((d * d).mean()), rel=1e-5)
