"""The inspector's numbers (Qt-free): histograms, channel ranges, grids, comparison specs."""

import gc

import numpy as np
import torch

from quantviz.core import QuantSpec, quantize
from quantviz.core.layer_view import LayerViewCache, comparison_spec, layer_view


def _w():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 4, 3, 3, generator=g) * torch.linspace(0.1, 2.0, 8)[:, None, None, None]


def test_whole_tensor_histogram_and_channel_ranges():
    w = _w()
    d = layer_view("conv", w, QuantSpec(bits=4), None, 0)
    assert d.channel == -1 and d.rows == 1
    assert d.counts.sum() == w.numel()
    assert np.allclose(d.chan_min, w.reshape(8, -1).amin(1).numpy())
    assert np.allclose(d.chan_max, w.reshape(8, -1).amax(1).numpy())
    r = quantize(w, QuantSpec(bits=4))
    assert np.array_equal(d.main.levels, r.levels.double().numpy())
    assert d.main.sqnr_db == r.sqnr_db


def test_per_channel_shows_one_row_and_its_grid():
    w = _w()
    spec = QuantSpec(bits=3, granularity="per_channel")
    d = layer_view("conv", w, spec, "kmeans", 5)
    assert (d.channel, d.rows, d.row_kind) == (5, 8, "channel")
    assert d.counts.sum() == 36  # one output channel: 4 x 3 x 3 values
    assert np.array_equal(d.main.levels, quantize(w, spec).levels[5].double().numpy())
    assert d.compare is not None and d.compare.spec.quantizer == "kmeans"
    assert d.compare.levels.size == 8


def test_bad_spec_is_reported_as_text():
    d = layer_view("conv", _w(), QuantSpec(granularity="per_group", group_size=7), None, 0)
    assert d.main is None and "group_size: 7" in d.error


def test_comparison_spec_keeps_what_applies():
    s = QuantSpec(bits=1, symmetric=False)
    assert comparison_spec(s, "log2").bits == 2
    assert comparison_spec(s, "nf4").symmetric
    r = QuantSpec(bits=4, restricted_range=True)
    assert not comparison_spec(r, "uniform").restricted_range


def test_cache_reuses_float_parts_and_forgets_freed_tensors():
    cache = LayerViewCache()
    w = _w()
    calls = []
    cache.get(w, ("a",), lambda: calls.append(1))
    cache.get(w, ("a",), lambda: calls.append(1))
    assert len(calls) == 1
    w.mul_(2)  # a new version
    cache.get(w, ("a",), lambda: calls.append(1))
    assert len(calls) == 2
    del w
    gc.collect()
    w2 = _w()  # may reuse the freed id: must not hit
    cache.get(w2, ("a",), lambda: calls.append(1))
    assert len(calls) == 3


def test_block_formats_show_one_block_and_its_grid():
    """A block's grid is its E2M1 elements times the block's power-of-two scale, computed
    here from the OCP MX rule; the comparison brings its own blocks (NVFP4: 16)."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(16, 64, generator=g)
    d = layer_view(
        "fc",
        w,
        QuantSpec(bits=8, granularity="per_channel").with_(
            quantizer="mxfp4", granularity="per_group", group_size=32
        ),
        "nvfp4",
        3,
    )
    assert (d.channel, d.rows, d.row_kind) == (3, 32, "group")
    block = w.reshape(-1, 32)[3]
    x = 2.0 ** (np.floor(np.log2(float(block.abs().max()))) - 2)
    e2m1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])
    want = np.unique(np.concatenate([-e2m1, e2m1])) * x
    assert np.array_equal(d.main.levels, want)
    assert d.main.bits_per_value == 4.25
    assert d.compare is not None and d.compare.spec == QuantSpec(quantizer="nvfp4")
    assert d.compare.rows == 64 and d.compare.levels.size == 15
    # from a per-channel int spec to mxint8 and back to uniform
    s = comparison_spec(QuantSpec(bits=4, granularity="per_channel", calibration="mse"), "mxint8")
    assert s == QuantSpec(quantizer="mxint8")
    assert comparison_spec(s, "uniform").granularity == "per_group"


def test_layer_view_cache_hits_for_a_parameter():
    """The float parts of a layer are computed once per tensor even though the view
    detaches it (a new tensor object per call)."""
    lin = torch.nn.Linear(64, 32)
    cache = LayerViewCache()
    spec = QuantSpec(bits=4, granularity="per_channel")
    d1 = layer_view("fc", lin.weight, spec, None, 3, cache)
    n = len(cache._d)
    d2 = layer_view("fc", lin.weight, spec.with_(bits=3), None, 3, cache)
    assert len(cache._d) == n == 2  # the whole tensor and row 3: no new entries
    assert d1.counts is d2.counts and d1.chan_min is d2.chan_min
