"""apply_config(stream=True): the same model output as applying every weight up front, with
one layer's quantized weight in place at a time (tied lm_head included)."""

from __future__ import annotations

import pytest
import torch

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.eval import WeightCache, apply_config
from quantviz.model import load_model

transformers = pytest.importorskip("transformers")

W4 = ModelConfig(
    default=LayerConfig(weight=QuantSpec(bits=4, granularity="per_group", group_size=32))
)


@pytest.fixture(scope="module")
def handle(tmp_path_factory):
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=2, vocab_size=96, n_positions=32, tie_word_embeddings=True
    )
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("gpt2")
    transformers.GPT2LMHeadModel(cfg).save_pretrained(d)
    return load_model(str(d))


def _ids():
    return torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(1))


def test_stream_equals_applying_every_weight(handle):
    ids = _ids()
    with torch.no_grad():
        ref_float = handle.module(ids).logits
        with apply_config(handle, W4) as applied:
            ref = handle.module(ids).logits
        assert applied.weights  # every layer quantized up front
        cache = WeightCache(max_bytes=0)
        with apply_config(handle, W4, cache=cache, stream=True) as streamed:
            got = handle.module(ids).logits
            got2 = handle.module(ids).logits  # a second pass quantizes again, same result
        after = handle.module(ids).logits
    assert streamed.weights == {}
    assert torch.equal(got, ref) and torch.equal(got2, ref)
    assert not torch.equal(ref, ref_float)
    assert torch.equal(after, ref_float)  # the float model is back
    # each layer once per pass, the tied embedding / lm_head once per block (kept)
    assert cache.misses == 2 * len(handle.fqns) - 1


def test_stream_has_one_layer_quantized_at_a_time(handle):
    floats = {n: p.data_ptr() for n, p in handle.module.named_parameters()}
    seen: list[int] = []

    def count(_m, _a, _o=None):
        params = dict(handle.module.named_parameters())
        seen.append(sum(params[n].data_ptr() != f for n, f in floats.items()))

    mods = [m for m in handle.module.modules() if not list(m.children())]
    removers = [m.register_forward_hook(count) for m in mods]
    try:
        with torch.no_grad(), apply_config(handle, W4, cache=WeightCache(0), stream=True):
            handle.module(_ids())
    finally:
        for r in removers:
            r.remove()
    # the hooks run after each module's own restoring hook, or while the tied
    # embedding (pinned: the lm_head runs last) is in place
    assert seen and max(seen) <= 1
    assert all(p.data_ptr() == floats[n] for n, p in handle.module.named_parameters())


def test_stream_keeps_the_weights_only_when_all_fit_the_cache(handle):
    from quantviz.eval.apply import quantized_bytes

    need = quantized_bytes(handle, W4)
    # a tied embedding counts once; the weights' own dtype
    assert need == sum(lay.weight_numel * 4 for lay in handle.layers)
    ids = _ids()
    roomy = WeightCache(max_bytes=need)
    with torch.no_grad(), apply_config(handle, W4, cache=roomy, stream=True) as applied:
        first = handle.module(ids).logits
        misses = roomy.misses
        second = handle.module(ids).logits
    assert misses == len(handle.fqns) and roomy.misses == misses  # the second pass: hits
    assert len(roomy) == len(handle.fqns) and torch.equal(first, second)
    assert set(applied.streamed) == set(handle.fqns)
    assert all(e.dequantized.device.type == "meta" for e in applied.streamed.values())
    # one byte short: nothing kept (LRU would evict each layer before the next pass)
    tight = WeightCache(max_bytes=need - 1)
    with torch.no_grad(), apply_config(handle, W4, cache=tight, stream=True):
        handle.module(ids)
        handle.module(ids)
    assert len(tight) == 0 and tight.hits == 0
