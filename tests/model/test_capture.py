"""Activation statistics: exact extremes, bounded memory, percentiles, stoppable generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quantviz.data import load_data
from quantviz.model import load_model
from quantviz.model.capture import ActivationStats, StatsCollector, capture_stats


def test_histogram_bounded_and_percentiles_match_numpy():
    st = ActivationStats(bins=2048)
    gen = torch.Generator().manual_seed(0)
    chunks = []
    sizes = set()
    for i in range(100):
        # drifting, widening, skewed data forces the range to grow several times
        t = torch.randn(2000, generator=gen) * (1 + i / 10) + i / 20
        if i % 7 == 0:
            t = t.exp()
        st.update(t)
        chunks.append(t.numpy().astype(np.float64))
        sizes.add((st.counts.shape, st.nbytes))
    assert sizes == {((2048,), 2048 * 8)}  # constant memory whatever the number of batches
    data = np.concatenate(chunks)
    counts, edges = st.histogram()
    assert counts.shape == (2048,) and edges.shape == (2049,)
    assert counts.sum() == st.count == data.size
    assert st.min == data.min() and st.max == data.max()
    assert edges[0] <= data.min() and edges[-1] >= data.max()
    # each histogram count equals numpy's count over the same edges
    np_counts, _ = np.histogram(data, bins=edges)
    assert np.abs(np_counts - counts).sum() <= 2  # float rounding at bin edges
    width = edges[1] - edges[0]
    qs = [0.01, 0.1, 1, 10, 50, 90, 99, 99.9, 99.99]
    got = st.percentile(qs)
    want = np.percentile(data, qs)
    assert np.all(np.abs(got - want) <= width + 1e-9), (got - want) / width
    assert st.percentile(0) == data.min() and st.percentile(100) == data.max()
    # float32 reductions per batch, accumulated in float64
    assert st.mean == pytest.approx(data.mean(), rel=1e-6)
    assert st.std == pytest.approx(data.std(), rel=1e-5)


def test_large_batches_are_sampled_for_the_histogram_only():
    """Batches above ``sample`` values: exact extremes / count / moments, a sampled histogram
    whose percentiles stay within a few bins of numpy's on all the values."""
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(64, 32, 28, 28, generator=gen).relu_() * (1 + i) for i in range(4)]
    st = ActivationStats(bins=2048, sample=1 << 16)  # 4% of 1.6M values
    for b in batches:
        st.update(b)
    data = torch.cat([b.reshape(-1) for b in batches]).double().numpy()
    assert st.count == data.size and (st.min, st.max) == (data.min(), data.max())
    assert st.mean == pytest.approx(data.mean(), rel=1e-6)
    assert st.std == pytest.approx(data.std(), rel=1e-5)
    counts, edges = st.histogram()
    assert 0.8 * st.rate * data.size <= counts.sum() <= 1.2 * st.rate * data.size
    assert counts.sum() < data.size / 10  # sampled
    width = edges[1] - edges[0]
    qs = [1, 10, 50, 90, 99, 99.9]
    got = st.percentile(qs)
    want = np.percentile(data, qs)
    assert np.all(np.abs(got - want) <= 10 * width), (got - want) / width
    # seeded: the same data give the same histogram
    again = ActivationStats(bins=2048, sample=1 << 16)
    for b in batches:
        again.update(b)
    assert np.array_equal(again.histogram()[0], counts)
    # sample=None bins every value
    full = ActivationStats(bins=2048, sample=None)
    for b in batches:
        full.update(b)
    assert full.histogram()[0].sum() == data.size
    with pytest.raises(ValueError, match="sample"):
        ActivationStats(sample=0)


def test_constant_then_growing_data():
    st = ActivationStats(bins=64)
    st.update(torch.zeros(10))
    st.update(torch.full((5,), 3.0))
    st.update(torch.tensor([-1e6, float("nan")]))
    assert (st.min, st.max, st.count, st.nonfinite) == (-1e6, 3.0, 16, 1)
    counts, edges = st.histogram()
    assert counts.sum() == 16 and edges[0] <= -1e6 and edges[-1] >= 3.0
    with pytest.raises(ValueError, match="q must be in"):
        st.percentile(101)
    with pytest.raises(ValueError, match="bins"):
        ActivationStats(bins=1)


def test_capture_stats_on_sample_matches_direct_computation():
    h = load_model("sample:digits_cnn")
    data = load_data(None, h)
    gen = capture_stats(h, data.calib_batches(64), total=data.num_calib_batches(64))
    progress = []
    while True:
        try:
            progress.append(next(gen))
        except StopIteration as stop:
            stats = stop.value
            break
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert set(stats) == {"conv1", "conv2", "fc1", "fc2"}
    with torch.no_grad():
        a1 = torch.relu(h.module.conv1(data.calib_x))
        out2 = h.module.conv2(a1)
    s = stats["conv2"]
    assert s.input.count == a1.numel() and s.input.min == float(a1.min())
    assert s.output.max == float(out2.max()) and s.output.min == float(out2.min())
    width = np.diff(s.output.histogram()[1][:2])[0]
    assert abs(s.output.percentile(99) - np.percentile(out2.numpy(), 99)) <= width
    # hooks are gone: the model runs without touching the stats
    before = s.output.count
    with torch.no_grad():
        h.module(data.calib_x[:8])
    assert s.output.count == before


def test_collector_can_stop_at_any_yield():
    h = load_model("sample:digits_mobilenet")
    data = load_data(None, h)
    col = StatsCollector(h, layers=["dw1", "fc"])
    run = col.run(list(data.calib_batches(32)))
    assert next(run) == (1, 8)
    assert next(run) == (2, 8)
    run.close()  # stop early: hooks removed, partial stats kept
    assert col.batches_done == 2
    assert set(col.stats) == {"dw1", "fc"}
    assert col.stats["fc"].output.count == 2 * 32 * 10
    with torch.no_grad():
        h.module(data.calib_x[:4])
    assert col.stats["fc"].output.count == 2 * 32 * 10
    with pytest.raises(KeyError, match="nope"):
        StatsCollector(h, layers=["nope"])


@pytest.mark.filterwarnings("ignore:`torch.jit.*:DeprecationWarning")
def test_capture_on_exported_and_refused_on_torchscript(tmp_path):
    import warnings

    ref = load_model("sample:digits_cnn")
    x = torch.rand(16, 1, 8, 8)
    pt2 = tmp_path / "cnn.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(
            torch.export.export(
                ref.module, (x[:2],), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},)
            ),
            str(pt2),
        )
    h = load_model(str(pt2))
    assert h.meta["static_batch"] is False  # example input [2,...] cut to [1,...]
    assert tuple(h.example_input.shape) == (1, 1, 8, 8)
    stats = StatsCollector(h)
    for _ in stats.run([x[:8], (x[8:], None)]):
        pass
    with torch.no_grad():
        want = ref.module.fc1(
            torch.relu(
                ref.module.pool(
                    torch.relu(ref.module.conv2(torch.relu(ref.module.conv1(x))))
                ).flatten(1)
            )
        )
    assert stats.stats["fc1"].output.max == pytest.approx(float(want.max()))
    assert stats.stats["fc1"].output.count == want.numel()
    ts = tmp_path / "cnn.ts"
    torch.jit.save(torch.jit.script(ref.module), str(ts))
    hts = load_model(str(ts), input_shape=(1, 1, 8, 8))
    with pytest.raises(ValueError, match="TorchScript"):
        next(capture_stats(hts, [x]))
