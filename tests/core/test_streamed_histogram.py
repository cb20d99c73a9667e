"""The weight histogram is streamed over blocks and equals ``numpy.histogram`` on the same
bins (bins [e_i, e_i+1), the last one closed), for every float dtype, block size and range."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quantviz.core.layer_view import layer_view
from quantviz.core.metrics import histogram
from quantviz.core.spec import QuantSpec

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _numpy(x: torch.Tensor, edges: np.ndarray) -> np.ndarray:
    return np.histogram(x.double().numpy().reshape(-1), bins=edges)[0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [7, 1000, 1 << 20])
def test_equals_numpy_histogram_on_the_same_bins(dtype, block):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(300, 70, generator=g) * 0.05).to(dtype)
    counts, edges = histogram(x, 37, block=block)
    e = edges.numpy()
    assert np.array_equal(e, np.linspace(float(x.min()), float(x.max()), 38))
    assert np.array_equal(counts.numpy(), _numpy(x, e))
    assert counts.sum() == x.numel()  # min and max are inside: the last bin is closed


@pytest.mark.parametrize("dtype", DTYPES)
def test_values_on_edges_and_outside_a_given_range(dtype):
    # values exactly on the edges (0.25 steps) and outside [-1, 1]
    x = torch.tensor([-2.0, -1.0, -0.75, -0.5, 0.0, 0.25, 0.5, 1.0, 1.0, 3.0] * 5).to(dtype)
    counts, edges = histogram(x, 8, -1.0, 1.0, block=3)
    assert np.array_equal(counts.numpy(), _numpy(x, edges.numpy()))
    assert counts.sum() == 40  # -2 and 3 are outside


@settings(max_examples=60, deadline=None)
@given(
    vals=st.lists(
        st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32),
        min_size=1,
        max_size=300,
    ),
    bins=st.integers(1, 64),
    block=st.integers(1, 64),
    dtype=st.sampled_from(DTYPES),
)
def test_property_any_values(vals, bins, block, dtype):
    x = torch.tensor(vals, dtype=torch.float32).to(dtype)
    if not torch.isfinite(x).all():  # a float16 overflow
        return
    counts, edges = histogram(x, bins, block=block)
    assert np.array_equal(counts.numpy(), _numpy(x, edges.numpy()))
    assert counts.sum() == x.numel()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="NaN or inf"):
        histogram(torch.tensor([0.0, float("nan")], dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="bins"):
        histogram(torch.ones(3), 0)
    with pytest.raises(ValueError, match="empty"):
        histogram(torch.ones(0))


def test_layer_view_histograms_of_a_bf16_layer():
    """The whole-tensor and one-row histograms of a bf16 layer, as the inspector shows them."""
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(64, 256, generator=g) * 0.02).to(torch.bfloat16)
    d = layer_view("emb", w, QuantSpec(bits=8), None, 0)
    assert np.array_equal(d.counts, _numpy(w, d.edges))
    spec = QuantSpec(bits=4, granularity="per_group", group_size=128)
    d = layer_view("emb", w, spec, None, 5)  # group 5 = row 2, second half
    assert d.channel == 5 and d.counts.sum() == 128
    assert np.array_equal(d.counts, _numpy(w[2, 128:], d.edges))
    d = layer_view("emb", w, QuantSpec(bits=4, granularity="per_channel", axis=1), None, 9)
    assert np.array_equal(d.counts, _numpy(w[:, 9], d.edges))


def test_float32_range_between_representable_values():
    """A given range whose ends are not float32 numbers: a float32 value just inside or just
    outside is binned (or dropped) as numpy does in float64."""
    lo, hi = 0.1, 0.7  # neither is a float32
    f_lo, f_hi = np.float32(lo), np.float32(hi)
    near = [np.nextafter(f_lo, np.float32(-1)), f_lo, np.nextafter(f_lo, np.float32(1))]
    near += [np.nextafter(f_hi, np.float32(-1)), f_hi, np.nextafter(f_hi, np.float32(1))]
    x = torch.tensor(np.array([*near, 0.3, 0.4, 0.5], dtype=np.float32))
    counts, edges = histogram(x, 3, lo, hi, block=2)
    assert np.array_equal(counts.numpy(), _numpy(x, edges.numpy()))
