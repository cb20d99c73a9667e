"""The fast kernels against independent plain-torch expressions of the same quantizers.

* uniform int4 g128 (symmetric minmax): the amax / round / clamp / mul expression people
  write by hand, bit for bit;
* NF4 with 64-value blocks: bitsandbytes' algorithm (absmax per block, multiply by its
  reciprocal, the nearest NormalFloat-4 code by its binary decision tree, code times
  absmax), bit for bit;
* k-means per tensor: every output is the nearest of the fitted levels (argmin of the
  distance), which the lookup-table search must find exactly.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quantviz.core import QuantSpec, quantize
from quantviz.core.quantizers.base import kernel_threads

# bitsandbytes functional.create_normal_map(), as printed by its NF4 lookup table
NF4 = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
]


def int4_g128_plain(w: torch.Tensor) -> torch.Tensor:
    g = w.reshape(-1, 128)
    amax = torch.maximum(-g.amin(1).clamp(max=0), g.amax(1).clamp(min=0))
    scale = torch.clamp(amax / 7.5, min=torch.finfo(torch.float32).eps)[:, None]
    q = torch.clamp(torch.round(g * (1.0 / scale)), -8, 7)
    return (q * scale).reshape(w.shape)


def _nf4_code(v: torch.Tensor) -> torch.Tensor:
    """bitsandbytes' ``dQuantizeNF4``: a depth-4 tree of ``x > threshold`` tests."""
    t = torch.tensor(NF4)

    def thr(i: int) -> torch.Tensor:  # the midpoint between code i-1 and code i
        return (t[i - 1] + t[i]) * 0.5

    def node(lo: int, hi: int) -> torch.Tensor:  # codes lo .. hi-1
        if hi - lo == 1:
            return torch.full(v.shape, lo, dtype=torch.int64)
        mid = (lo + hi) // 2
        return torch.where(v > thr(mid), node(mid, hi), node(lo, mid))

    return node(0, 16)


def nf4_bnb_style(w: torch.Tensor, block: int = 64) -> torch.Tensor:
    b = w.reshape(-1, block)
    absmax = b.abs().amax(1, keepdim=True)
    code = _nf4_code(b * (1.0 / absmax))
    return (torch.tensor(NF4)[code] * absmax).reshape(w.shape)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 24),
    groups=st.integers(1, 4),
    log_scale=st.floats(-6, 3),
    seed=st.integers(0, 2**16),
)
def test_uniform_int4_g128_equals_plain_torch(rows, groups, log_scale, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, 128 * groups, generator=g) * 10.0**log_scale
    w *= torch.rand(rows, 1, generator=g) + 0.01  # rows of different ranges
    r = quantize(w, QuantSpec(bits=4, granularity="per_group", group_size=128))
    assert torch.equal(r.dequantized, int4_g128_plain(w))


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 24),
    blocks=st.integers(1, 6),
    log_scale=st.floats(-6, 3),
    seed=st.integers(0, 2**16),
)
def test_nf4_g64_equals_bitsandbytes_algorithm(rows, blocks, log_scale, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, 64 * blocks, generator=g) * 10.0**log_scale
    spec = QuantSpec(bits=4, quantizer="nf4", granularity="per_group", group_size=64)
    assert torch.equal(quantize(w, spec).dequantized, nf4_bnb_style(w))


def test_nf4_ties_and_neighbours_of_every_threshold():
    """Values exactly at each midpoint go to the lower code, their float neighbours across."""
    t = torch.tensor(NF4)
    mids = (t[1:] + t[:-1]) * 0.5
    vals = torch.cat([mids, torch.nextafter(mids, mids - 1), torch.nextafter(mids, mids + 1), t])
    w = torch.cat([vals, torch.tensor([1.0, -1.0])])  # absmax 1: the values are the codes' units
    r = quantize(w, QuantSpec(bits=4, quantizer="nf4"))
    assert torch.equal(r.dequantized, t[_nf4_code(w)])
    assert torch.equal(r.dequantized[: mids.numel()], t[:-1])  # ties to the lower code


def test_nf4_large_tensor_equals_bitsandbytes_algorithm():
    torch.manual_seed(3)
    w = torch.randn(1024, 1024) * 0.02  # a million values: several chunks
    spec = QuantSpec(bits=4, quantizer="nf4", granularity="per_group", group_size=64)
    assert torch.equal(quantize(w, spec).dequantized, nf4_bnb_style(w))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(300, 5000), log_scale=st.floats(-4, 3), seed=st.integers(0, 2**16))
def test_kmeans_outputs_are_the_nearest_level(n, log_scale, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, generator=g).pow(3) * 10.0**log_scale  # heavy tails: uneven levels
    r = quantize(w, QuantSpec(bits=4, quantizer="kmeans"))
    lv = r.levels
    nearest = lv[torch.argmin((w[:, None] - lv[None, :]).abs(), dim=1)]
    assert torch.equal(r.dequantized, nearest)


def test_kernel_threads_is_forced_by_the_environment_and_restored(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("QUANTVIZ_KERNEL_THREADS", "1")
    with kernel_threads(1 << 24) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.delenv("QUANTVIZ_KERNEL_THREADS")
    with kernel_threads(100) as n:  # a small tensor: one thread
        assert n == 1
    assert torch.get_num_threads() == before
