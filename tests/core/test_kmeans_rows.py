"""Per-channel / per-group k-means: every value goes to its row's nearest level (ties to
the lower one), checked against a plain argmin-distance assignment; the fitted levels are
a fixed point of Lloyd's iteration under that assignment (numpy, from scratch)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quantviz.core import QuantSpec, clear_cache, quantize
from quantviz.core.dist import lloyd_rows
from quantviz.core.quantizers.codebook import _padded_mids, _row_search


def _argmin_levels(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Nearest level per value by |x - level| in float32 as the kernels compare; a value
    exactly on a midpoint goes to the lower level (the first argmin of the distances to the
    midpoint-decided pair)."""
    mids = (0.5 * (levels[:, 1:] + levels[:, :-1])).astype(np.float32)
    idx = (x[:, :, None] > mids[:, None, :]).sum(-1)  # midpoints strictly below
    return np.take_along_axis(levels, idx, 1)


def _argmin_distance(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    d = np.abs(x[:, :, None].astype(np.float64) - levels[:, None, :].astype(np.float64))
    return np.take_along_axis(levels, d.argmin(-1), 1)


@settings(max_examples=50, deadline=None)
@given(
    rows=st.integers(1, 9),
    k=st.sampled_from([2, 3, 5, 16, 17, 64]),
    cols=st.integers(1, 80),
    seed=st.integers(0, 10_000),
    ties=st.booleans(),
)
def test_row_search_is_searchsorted(rows, k, cols, seed, ties):
    g = torch.Generator().manual_seed(seed)
    lv = torch.sort(torch.randn(rows, k, generator=g), 1).values
    x = torch.randn(rows, cols, generator=g)
    pad = _padded_mids(lv)
    if ties:  # values exactly on midpoints and on levels
        x[:, : min(cols, k - 1)] = pad[:, : min(cols, k - 1)]
        x[:, -1] = lv[:, 0]
    mids = 0.5 * (lv[:, 1:] + lv[:, :-1])
    assert torch.equal(_row_search(x, pad), torch.searchsorted(mids.contiguous(), x))


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(2, 6),
    cols=st.sampled_from([16, 40, 128]),
    bits=st.integers(1, 4),
    seed=st.integers(0, 10_000),
    gran=st.sampled_from(["per_channel", "per_group"]),
)
def test_kmeans_rows_assign_each_value_its_nearest_level(rows, cols, bits, seed, gran):
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.standard_normal((rows, cols)) * rng.uniform(0.01, 2, (rows, 1)))
    x = x.to(torch.float32)
    spec = QuantSpec(bits=bits, quantizer="kmeans", granularity=gran, group_size=8)
    clear_cache()
    r = quantize(x, spec)
    xr = r.row_view.to_rows(x).numpy()
    lv = r.levels.reshape(xr.shape[0], -1).numpy()
    got = r.row_view.to_rows(r.dequantized).numpy()
    assert np.array_equal(got, _argmin_levels(xr, lv))
    # and nearest by distance (a tie may pick either of two equally near levels)
    ref = _argmin_distance(xr, lv)
    dg, dr = np.abs(got - xr), np.abs(ref - xr)
    assert np.all(dg <= dr + 1e-6 * np.abs(xr).max())


@pytest.mark.parametrize(("shape", "k"), [((40, 300), 16), ((7, 1000), 4), ((30, 64), 8)])
def test_lloyd_rows_is_a_fixed_point_of_the_argmin_assignment(shape, k):
    rng = np.random.default_rng(1)
    v = np.sort(rng.standard_normal(shape) * rng.uniform(0.1, 3, (shape[0], 1)), axis=1)
    v[: shape[0] // 2] = np.round(v[: shape[0] // 2] * 3) / 3  # rows with many ties
    c = lloyd_rows(v, k)
    for row, cen in zip(v, c, strict=True):
        a = np.abs(row[:, None] - cen[None, :]).argmin(1)  # nearest centroid, ties lower
        for j in np.unique(a):
            assert row[a == j].mean() == pytest.approx(cen[j], rel=1e-9, abs=1e-12)
