"""uniform + minmax is bit-identical to torch.ao observers + torch's fake-quant kernels."""

import pytest
import torch
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

from quantviz.core import QuantSpec, quantize

SCHEMES = [
    # (symmetric, restricted_range)
    (True, False),
    (True, True),
    (False, False),
]


def _observer(spec: QuantSpec, axis: int | None):
    qmin, qmax = spec.qrange
    dtype = torch.qint32 if spec.bits > 8 else (torch.qint8 if spec.symmetric else torch.quint8)
    if axis is None:
        scheme = torch.per_tensor_symmetric if spec.symmetric else torch.per_tensor_affine
        return MinMaxObserver(dtype=dtype, qscheme=scheme, quant_min=qmin, quant_max=qmax)
    scheme = torch.per_channel_symmetric if spec.symmetric else torch.per_channel_affine
    return PerChannelMinMaxObserver(
        ch_axis=axis, dtype=dtype, qscheme=scheme, quant_min=qmin, quant_max=qmax
    )


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8, 12, 16])
@pytest.mark.parametrize(("symmetric", "restricted"), SCHEMES)
def test_per_tensor_matches_torch(bits, symmetric, restricted):
    torch.manual_seed(bits)
    w = torch.randn(64, 16, 3, 3) * 0.1 + 0.02
    spec = QuantSpec(bits=bits, symmetric=symmetric, restricted_range=restricted)
    obs = _observer(spec, None)
    obs(w)
    scale, zp = obs.calculate_qparams()
    r = quantize(w, spec)
    assert torch.equal(r.scale, scale.reshape(()))
    assert int(r.zero_point) == int(zp)
    qmin, qmax = spec.qrange
    ref = torch.fake_quantize_per_tensor_affine(w, scale, zp.to(torch.int32), qmin, qmax)
    assert torch.equal(r.dequantized, ref)


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
@pytest.mark.parametrize(("symmetric", "restricted"), SCHEMES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_per_channel_matches_torch(bits, symmetric, restricted, axis):
    torch.manual_seed(100 + bits)
    w = torch.randn(32, 24, 5) * torch.linspace(0.01, 2.0, 24)[None, :, None]
    spec = QuantSpec(
        bits=bits,
        symmetric=symmetric,
        restricted_range=restricted,
        granularity="per_channel",
        axis=axis,
    )
    ax = axis % w.ndim
    obs = _observer(spec, ax)
    obs(w)
    scale, zp = obs.calculate_qparams()
    r = quantize(w, spec)
    assert torch.equal(r.scale, scale)
    assert torch.equal(r.zero_point, zp.to(torch.int64))
    qmin, qmax = spec.qrange
    ref = torch.fake_quantize_per_channel_affine(w, scale, zp.to(torch.int32), ax, qmin, qmax)
    assert torch.equal(r.dequantized, ref)


def test_large_tensor_crosses_chunks_bit_identical():
    torch.manual_seed(0)
    w = torch.randn(3_000_001)  # several chunks and a ragged tail
    spec = QuantSpec(bits=8, symmetric=False)
    obs = _observer(spec, None)
    obs(w)
    scale, zp = obs.calculate_qparams()
    ref = torch.fake_quantize_per_tensor_affine(w, scale, zp.to(torch.int32), 0, 255)
    assert torch.equal(quantize(w, spec).dequantized, ref)


def test_per_channel_many_small_rows_bit_identical():
    torch.manual_seed(1)
    w = torch.randn(100_000, 9)  # row blocks of many rows
    spec = QuantSpec(bits=4, granularity="per_channel")
    obs = _observer(spec, 0)
    obs(w)
    scale, zp = obs.calculate_qparams()
    ref = torch.fake_quantize_per_channel_affine(w, scale, zp.to(torch.int32), 0, -8, 7)
    assert torch.equal(quantize(w, spec).dequantized, ref)


@pytest.mark.parametrize("bits", [2, 4, 8, 12])
@pytest.mark.parametrize(("symmetric", "restricted"), SCHEMES)
def test_range_search_grids_are_torch_observer_grids(bits, symmetric, restricted):
    """The grids the mse range search scores, built for hundreds of ranges in one call, are
    the grids torch's observer fits to each range: levels (q - zero_point) * scale."""
    import numpy as np

    from quantviz.core.quantizers.uniform import uniform_levels_batch

    spec = QuantSpec(bits=bits, symmetric=symmetric, restricted_range=restricted)
    rng = np.random.default_rng(bits)
    lo = -rng.uniform(0, 3, 40) * (rng.uniform(size=40) > 0.1)
    hi = rng.uniform(0, 3, 40) * (rng.uniform(size=40) > 0.1)
    got = uniform_levels_batch(lo, hi, spec)
    qmin, qmax = spec.qrange
    q = torch.arange(qmin, qmax + 1, dtype=torch.float64)
    for i in range(lo.size):
        obs = _observer(spec, None)
        obs(torch.tensor([lo[i], hi[i]], dtype=torch.float32))
        scale, zp = obs.calculate_qparams()
        want = (q - float(zp)) * float(scale)
        assert np.array_equal(got[i], want.numpy()), (i, lo[i], hi[i])
