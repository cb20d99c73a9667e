"""Property tests over shapes, dtypes, bit-widths, quantizers, schemes and granularities."""

import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantviz.core import CALIBRATIONS, FIXED_WIDTH, QUANTIZERS, QuantSpec, quantize
from quantviz.core.spec import BLOCK_FORMATS

#: the block formats fix their own granularity: tests/core/test_block_formats.py covers them
PER_VALUE = tuple(q for q in QUANTIZERS if q not in BLOCK_FORMATS)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@st.composite
def cases(draw, quantizers=PER_VALUE, max_bits=16, dtypes=DTYPES, calibrations=CALIBRATIONS):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=ndim, max_size=ndim)))
    quantizer = draw(st.sampled_from(quantizers))
    lo_bits = 2 if quantizer == "log2" else 1
    hi_bits = min(8 if quantizer == "kmeans" else 16, max_bits)
    bits = draw(st.integers(lo_bits, hi_bits))
    symmetric = draw(st.booleans())
    restricted = symmetric and bits >= 2 and draw(st.booleans())
    granularity = draw(st.sampled_from(["per_tensor", "per_channel", "per_group"]))
    axis = draw(st.integers(-ndim, ndim - 1))
    row = math.prod(shape) // shape[0]
    group_size = draw(st.sampled_from([d for d in range(1, row + 1) if row % d == 0]))
    calibration = draw(st.sampled_from(calibrations))
    spec = QuantSpec(
        bits=bits,
        quantizer=quantizer,
        symmetric=symmetric,
        restricted_range=restricted,
        granularity=granularity,
        axis=axis,
        group_size=group_size,
        calibration=calibration,
        percentile=draw(st.floats(90.0, 100.0)),
    )
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-3, 1.0, 50.0]))
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * scale).to(dtype)
    if draw(st.booleans()):
        x = torch.where(x.abs() < scale * 0.5, torch.zeros_like(x), x)  # many exact zeros
    return x, spec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_quantize_invariants(case):
    x, spec = case
    r = quantize(x, spec)
    dq = r.dequantized
    assert dq.shape == x.shape and dq.dtype == x.dtype
    assert torch.isfinite(dq.float()).all()
    levels = r.levels
    rows_levels = levels[None] if levels.ndim == 1 else levels
    assert rows_levels.shape[1] <= 2**spec.bits
    if spec.quantizer in FIXED_WIDTH:
        assert spec.bits == FIXED_WIDTH[spec.quantizer]
    # every output value is one of its row's levels
    rows = r.row_view.to_rows(dq)
    assert rows.shape[0] == rows_levels.shape[0] or rows_levels.shape[0] == 1
    for i in range(rows.shape[0]):
        lv = rows_levels[i if rows_levels.shape[0] > 1 else 0].float()
        assert torch.isin(rows[i], lv).all(), (spec, i)
    # zero is exactly representable wherever the scheme promises it
    if spec.quantizer != "kmeans":
        assert (rows_levels == 0).any(dim=1).all()
    assert math.isfinite(r.mse) and r.mse >= 0
    assert not math.isnan(r.sqnr_db)
    assert 0.0 <= r.clipped_fraction <= 1.0
    assert r.bits_per_value >= spec.bits
    if spec.granularity == "per_tensor":
        assert r.levels.ndim == 1
        if r.scale is not None:
            assert r.scale.shape == ()
    elif r.scale is not None:
        assert r.scale.shape == (rows_levels.shape[0],)
    # on the uniform min/max grid every value is within half a step of its level
    if spec.quantizer == "uniform" and spec.calibration == "minmax" and x.dtype == torch.float32:
        xr = r.row_view.to_rows(x)
        err = (rows - xr).abs().amax(dim=1)
        half = r.fitted.scale / 2
        # plus float32 rounding of the scale, relative to the values' magnitude
        assert (err <= half * (1 + 1e-5) + xr.abs().amax(dim=1) * 2e-6).all()


@settings(max_examples=60, deadline=None)
@given(cases(quantizers=("uniform",), max_bits=12, dtypes=[torch.float32], calibrations=["minmax"]))
def test_error_shrinks_with_more_bits(case):
    """With min/max ranges nothing is clipped, so four more bits never increase the MSE.
    (With a percentile range the clipping error stays and the finer grid's zero point may
    round differently, so it can grow a little there.)"""
    x, spec = case
    coarse = quantize(x, spec)
    fine = quantize(x, spec.with_(bits=spec.bits + 4))
    assert fine.mse <= coarse.mse + 1e-12
