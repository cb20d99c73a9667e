"""``kl`` calibration is onnxruntime's entropy calibration (TensorRT's algorithm).

The reference is onnxruntime's own ``HistogramCollector.get_entropy_threshold`` (an
independent implementation: loops over candidates, int64 buffers, float32 entropy) called on
the same histogram, and its ``HistogramCollector`` fed the raw activations for the
activation path.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from quantviz.core import QuantSpec, quantize
from quantviz.core.ranges import entropy_threshold

ort_calibrate = pytest.importorskip("onnxruntime.quantization.calibrate")


def _collector(nq: int):
    return ort_calibrate.HistogramCollector(
        method="entropy",
        symmetric=False,
        num_bins=2048,
        num_quantized_bins=nq,
        percentile=99.99,
        scenario="same",
    )


def _ort_window(hist, edges, nq, lo=None, hi=None):
    """onnxruntime's threshold on this histogram; without lo/hi no clipping to the data."""
    lo = edges[0] if lo is None else lo
    hi = edges[-1] if hi is None else hi
    with contextlib.redirect_stdout(io.StringIO()):
        a, b = _collector(nq).get_entropy_threshold(
            (hist, edges.astype(np.float32), np.float32(lo), np.float32(hi)), nq
        )
    return float(a), float(b)


def _sample(name: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if name == "relu_gaussian":
        x = np.maximum(rng.standard_normal(n), 0.0)
    elif name == "laplace":
        x = rng.laplace(size=n)
    elif name == "gaussian":
        x = rng.standard_normal(n)
    elif name == "student_t3":
        x = rng.standard_t(3, size=n)
    elif name == "student_t1.5":  # very heavy tails
        x = rng.standard_t(1.5, size=n)
    elif name == "relu6_shifted":
        x = np.clip(rng.standard_normal(n) * 2 + 1, 0, 6)
    elif name == "outliers":
        x = rng.standard_normal(n)
        x[:20] = 80.0
    else:  # pragma: no cover
        raise AssertionError(name)
    return x.astype(np.float32)


DISTS = [
    "relu_gaussian",
    "laplace",
    "gaussian",
    "student_t3",
    "student_t1.5",
    "relu6_shifted",
    "outliers",
]


@pytest.mark.parametrize("name", DISTS)
@pytest.mark.parametrize("nq", [256, 128, 16])
def test_window_equals_onnxruntime_on_the_same_histogram(name, nq):
    x = _sample(name, 100_000, seed=len(name) + nq)
    t = float(np.abs(x).max())
    hist, edges = np.histogram(x.astype(np.float64), 2048, range=(-t, t))
    ours = entropy_threshold(hist, edges, nq)
    ref = _ort_window(hist, edges, nq)
    width = edges[1] - edges[0]
    assert abs(ours[0] - ref[0]) <= width * 1.001 and abs(ours[1] - ref[1]) <= width * 1.001
    # in practice the very same window
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-6 * t)


def test_sparse_histogram_and_no_candidates():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(300)  # most bins empty: smoothing and int truncation matter
    t = float(np.abs(x).max())
    hist, edges = np.histogram(x, 2048, range=(-t, t))
    assert entropy_threshold(hist, edges, 256) == pytest.approx(
        _ort_window(hist, edges, 256), rel=1e-6
    )
    # a grid with more levels than the histogram has bins: the full range
    assert entropy_threshold(hist, edges, 4096) == (edges[0], edges[-1])


@pytest.mark.parametrize("name", ["relu_gaussian", "laplace", "gaussian", "student_t3"])
def test_kl_calibration_8bit_matches_onnxruntime(name):
    x = _sample(name, 200_000, seed=11)
    t = float(np.abs(x).max())
    hist, edges = np.histogram(x.astype(np.float64), 2048, range=(-t, t))
    width = edges[1] - edges[0]
    lo, hi = _ort_window(hist, edges, 256, float(x.min()), float(x.max()))
    xt = torch.from_numpy(x)
    # symmetric int8: 256 levels over the window; threshold = scale * 127.5
    sym = quantize(xt, QuantSpec(bits=8, calibration="kl"))
    assert float(sym.scale) * 127.5 == pytest.approx(max(abs(lo), abs(hi)), abs=width)
    # asymmetric uint8: the window clipped to the data
    asym = quantize(xt, QuantSpec(bits=8, symmetric=False, calibration="kl"))
    assert float(asym.scale) * 255 == pytest.approx(max(hi, 0) - min(lo, 0), abs=2 * width)


def test_relu_gaussian_threshold_is_not_far_below_onnxruntime():
    # the case: a ReLU'd Gaussian at 8 bits (old kl: 1.87; onnxruntime ~2.8-3.0)
    x = torch.relu(torch.randn(1_000_000, generator=torch.Generator().manual_seed(0)))
    r = quantize(x, QuantSpec(bits=8, calibration="kl"))
    t = float(r.scale) * 127.5
    hist, edges = np.histogram(x.double().numpy(), 2048, range=(-float(x.max()), float(x.max())))
    _, ref = _ort_window(hist, edges, 256, 0.0, float(x.max()))
    assert t == pytest.approx(ref, abs=edges[1] - edges[0])
    assert t > 2.5


@pytest.mark.parametrize("kind", ["gaussian", "relu_gaussian", "relu6_shifted"])
def test_activation_path_matches_onnxruntime_collector(kind):
    """fit_static on the captured histogram vs onnxruntime's collector on the raw inputs.

    onnxruntime collects every calibration value at once (its histogram is then the 2048
    bins over ``[-max|x|, max|x|]`` this calibration is defined on); ours comes from the
    capture histogram, built batch by batch with a growing range. The inputs are dense
    (>= 200k values) and smooth: on sparse or heavy-tailed layers the KL curve is noisy from
    bin to bin (about 2% on a 5k-value layer) and any two histogram layouts — onnxruntime's
    own batch-by-batch one included — can pick windows several percent apart.
    """
    from models import efficientnet_lite, handle_of

    from quantviz.eval.apply import fit_static
    from quantviz.model.capture import StatsCollector

    model = efficientnet_lite(width=0.5, num_classes=10, head=256, size=32, seed=3)
    # five batches whose range grows (the capture histogram is re-gridded as they come)
    batches = [
        torch.from_numpy(_sample(kind, 8 * 3 * 48 * 48, seed=i).reshape(8, 3, 48, 48)) * (1 + i / 4)
        for i in range(5)
    ]
    handle = handle_of(model, batches[0][:1])
    layers = ["conv_stem.0", "blocks.0.depthwise.0"]
    raw: dict[str, list[np.ndarray]] = {f: [] for f in layers}
    mods = dict(model.named_modules())
    hooks = [
        mods[f].register_forward_pre_hook(
            lambda _m, a, f=f: raw[f].append(a[0].detach().numpy().copy())
        )
        for f in layers
    ]
    collector = StatsCollector(handle, layers)
    for _ in collector.run(batches):
        pass
    for h in hooks:
        h.remove()
    ort = _collector(256)
    with contextlib.redirect_stdout(io.StringIO()):
        ort.collect({f: np.concatenate([r.ravel() for r in raw[f]]) for f in layers})
        ref = ort.compute_collection_result()
    spec = QuantSpec(bits=8, calibration="kl")
    for f in layers:
        assert sum(r.size for r in raw[f]) >= 200_000
        lo, hi, _hist, edges = ref[f]
        ort_t = max(abs(float(lo)), abs(float(hi)))
        width_ort = float(edges[1] - edges[0])
        _counts, our_edges = collector.stats[f].input.histogram()
        width_ours = float(our_edges[1] - our_edges[0])
        ours = fit_static(f, spec, collector.stats[f]).scale * 127.5
        assert ours == pytest.approx(ort_t, abs=2 * max(width_ort, width_ours)), f
