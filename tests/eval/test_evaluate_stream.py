"""evaluate() streams a model whose fake-quantized weights exceed the weight cache's budget:
each layer's weight is quantized while its module runs. The numbers are bit-identical to
quantizing every weight up front, and equal an independent torch fake-quant written here
(tiny GPT-2 with Conv1D and a tied lm_head, tiny Llama; the digits models with static
activations). A weight read outside its module makes evaluate run again up front."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from models import handle_of

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.core.defaults import DEFAULT_WEIGHT
from quantviz.data import load_data
from quantviz.data.types import EvalData
from quantviz.eval import WeightCache, apply_config, evaluate, run
from quantviz.eval.apply import quantized_bytes, stream_refusal
from quantviz.model import load_model

W4G = DEFAULT_WEIGHT.with_(bits=4, granularity="per_group", group_size=32)
W4 = ModelConfig(default=LayerConfig(weight=W4G))


def _events_and_result(gen):
    events: list = []
    return events, run(gen, events.append)


def _same_result(a, b) -> None:
    assert a.value == b.value and a.kl == b.kl and a.top1_agreement == b.top1_agreement
    assert a.cosine == b.cosine
    assert [x["weight_sqnr_db"] for x in a.layers] == [x["weight_sqnr_db"] for x in b.layers]
    assert [x["bits_per_value"] for x in a.layers] == [x["bits_per_value"] for x in b.layers]


# ---------------------------------------------------------------------------------------
# language models from transformers configs
# ---------------------------------------------------------------------------------------
def _torch_fake_quant(model: torch.nn.Module, bits: int, group: int) -> None:
    """Fake-quantize in place, with torch alone, every Linear / Embedding / Conv1D weight
    (each parameter once: GPT-2's lm_head is the embedding): symmetric, one scale per
    ``group`` consecutive values of an output row (Conv1D stores ``[in, out]``)."""
    from transformers.pytorch_utils import Conv1D

    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    done: set[int] = set()
    with torch.no_grad():
        for mod in model.modules():
            if not isinstance(mod, (torch.nn.Linear, torch.nn.Embedding, Conv1D)):
                continue
            w = mod.weight
            if id(w) in done:
                continue
            done.add(id(w))
            rows = w.t() if isinstance(mod, Conv1D) else w
            g = rows.reshape(-1, group)
            scale = (g.abs().amax(1) / ((qmax - qmin) / 2)).clamp_min(
                torch.finfo(torch.float32).eps
            )
            zp = torch.zeros(g.shape[0], dtype=torch.int32)
            fq = torch.fake_quantize_per_channel_affine(g, scale, zp, 0, qmin, qmax)
            fq = fq.reshape(rows.shape)
            w.copy_(fq.t() if isinstance(mod, Conv1D) else fq)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request, tmp_path_factory):
    pytest.importorskip("transformers")
    from hf_models import save

    folder = save(request.param, tmp_path_factory.mktemp(request.param))
    return request.param, load_model(str(folder))


def _tokens(vocab: int) -> EvalData:
    x = torch.randint(0, vocab, (6, 24), generator=torch.Generator().manual_seed(3))
    return EvalData("tokens", x, None, x[:2], task="causal_lm")


def test_lm_streamed_equals_up_front_and_torch_fake_quant(lm):
    kind, h = lm
    data = _tokens(int(h.meta["vocab_size"]))
    assert stream_refusal(h, W4) is None
    if kind == "gpt2":  # the lm_head is the embedding: quantized once per block (pinned)
        assert h.layer("transformer.wte").tied == ("lm_head.weight",)
    big = WeightCache()
    assert quantized_bytes(h, W4) <= big.max_bytes
    ev_up, up = _events_and_result(evaluate(h, data, W4, cache=big, batch_size=2))
    assert [e.stage for e in ev_up].count("quantize") == len(h.fqns)  # up front
    none = WeightCache(max_bytes=0)
    ev_st, st = _events_and_result(evaluate(h, data, W4, cache=none, batch_size=2))
    assert "quantize" not in {e.stage for e in ev_st} and len(none) == 0  # streamed
    assert none.misses >= 3 * len(h.fqns) - 3  # every batch quantized again (tied: pinned)
    _same_result(st, up)
    assert st.value != up.baseline
    assert st.timings["quantize"] > 0
    assert sum(st.timings.values()) == pytest.approx(st.seconds, rel=0.01)
    # the logits, bit for bit
    with torch.no_grad():
        with apply_config(h, W4):
            ref = h.module(data.x).logits
        with apply_config(h, W4, cache=WeightCache(0), stream=True):
            got = h.module(data.x).logits
    assert torch.equal(got, ref)
    # an independent torch fake-quant of the same model: transformers' own loss
    from hf_models import build

    q = build(kind)
    q.load_state_dict(h.module.state_dict())
    _torch_fake_quant(q, 4, 32)
    with torch.no_grad():
        ppl = math.exp(float(q(input_ids=data.x, labels=data.x).loss))
    assert st.value == pytest.approx(ppl, rel=1e-4)


def test_lm_streamed_evaluation_holds_one_quantized_layer_at_a_time(lm):
    _, h = lm
    data = _tokens(int(h.meta["vocab_size"]))
    floats = {n: p.data_ptr() for n, p in h.module.named_parameters()}
    seen: list[int] = []

    def count(_m, _a, _o):
        params = dict(h.module.named_parameters())
        seen.append(sum(params[n].data_ptr() != f for n, f in floats.items()))

    leaves = [m for m in h.module.modules() if not list(m.children())]
    removers = [m.register_forward_hook(count) for m in leaves]
    try:
        run(evaluate(h, data, W4, cache=WeightCache(0), batch_size=3))
    finally:
        for r in removers:
            r.remove()
    # float baseline, then the streamed pass: never more than one layer quantized in place
    # (the tied embedding stays in place until the lm_head has run)
    assert seen and max(seen) <= 1 and any(seen)
    assert all(p.data_ptr() == floats[n] for n, p in h.module.named_parameters())


# ---------------------------------------------------------------------------------------
# the sample digits models, weight-only and with static activations
# ---------------------------------------------------------------------------------------
W8A8 = ModelConfig(
    default=LayerConfig(
        weight=QuantSpec(bits=8, granularity="per_channel"),
        activation=QuantSpec(bits=8, symmetric=False),
    )
)
W4PC = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=4, granularity="per_channel")))


@pytest.mark.parametrize("sample", ["digits_cnn", "digits_mobilenet"])
@pytest.mark.parametrize("config", [W4PC, W8A8], ids=["w4", "w8a8"])
def test_digits_streamed_equals_up_front(sample, config):
    h = load_model(f"sample:{sample}")
    full = load_data(None, h)
    data = EvalData(full.name, full.x[:300], full.y[:300], full.calib_x[:128])
    stats: dict = {}
    up = run(evaluate(h, data, config, cache=WeightCache(), stats=stats, batch_size=128))
    none = WeightCache(0)
    st = run(evaluate(h, data, config, cache=none, stats=stats, batch_size=128))
    assert none.misses == 3 * len(h.fqns) and len(none) == 0  # 3 batches, streamed
    _same_result(st, up)
    assert st.value != pytest.approx(st.baseline, abs=1e-12) or st.kl > 0


# ---------------------------------------------------------------------------------------
# when the model cannot stream
# ---------------------------------------------------------------------------------------
class _Functional(torch.nn.Module):
    """fc2's weight is read by the model's forward, not by fc2's own forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(16, 32)
        self.fc2 = torch.nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        return torch.nn.functional.linear(h, self.fc2.weight, self.fc2.bias)


def test_a_weight_read_outside_its_module_is_evaluated_up_front(caplog):
    x = torch.randn(40, 16, generator=torch.Generator().manual_seed(2))
    h = handle_of(_Functional(), x[:1])
    assert h.fqns == ["fc1", "fc2"]
    data = EvalData("t", x, None, x[:8])
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=2, granularity="per_channel")))
    # streamed alone, fc2 would stay float: a different output
    with torch.no_grad():
        with apply_config(h, cfg):
            ref = h.module(x)
        with apply_config(h, cfg, cache=WeightCache(0), stream=True) as applied:
            partial = h.module(x)
    assert set(applied.streamed) == {"fc1"} and not torch.equal(partial, ref)
    up = run(evaluate(h, data, cfg, cache=WeightCache()))
    with caplog.at_level(logging.WARNING, logger="quantviz.eval"):
        st = run(evaluate(h, data, cfg, cache=WeightCache(0)))
    assert "fc2" in caplog.text and "up front" in caplog.text
    _same_result(st, up)
    # the up-front result is the independent one: torch's per-channel fake-quant of both
    m = _Functional()
    with torch.no_grad():
        for lin in (m.fc1, m.fc2):
            w = lin.weight
            scale = (w.abs().amax(1) / 1.5).clamp_min(torch.finfo(torch.float32).eps)
            zp = torch.zeros(w.shape[0], dtype=torch.int32)
            w.copy_(torch.fake_quantize_per_channel_affine(w, scale, zp, 0, -2, 1))
        out = m(x)
    assert torch.allclose(ref, out, rtol=1e-5, atol=1e-6)


def test_stream_refusals():
    h = load_model("sample:digits_cnn")
    assert stream_refusal(h, W4PC) is None
    with_cle = ModelConfig(default=LayerConfig(weight=W4PC.default.weight), transforms=["cle"])
    assert "transforms" in (stream_refusal(h, with_cle) or "")
    ada = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=4, rounding="adaround")))
    assert "AdaRound" in (stream_refusal(h, ada) or "")
    with (
        pytest.raises(ValueError, match="stream: transforms"),
        apply_config(h, with_cle, stream=True),
    ):
        pass
    # a transformed config is evaluated up front even when nothing fits the cache
    full = load_data(None, h)
    data = EvalData(full.name, full.x[:128], full.y[:128], full.calib_x[:64])
    events, r = _events_and_result(evaluate(h, data, with_cle, cache=WeightCache(0)))
    assert "quantize" in {e.stage for e in events} and r.value > 0


class _Discarding(torch.nn.Module):
    """``side``'s output is computed and dropped: an inf in its weight leaves the float
    output finite, but the weight cannot be quantized."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(8, 4)
        self.side = torch.nn.Linear(8, 4)
        with torch.no_grad():
            self.side.weight[1, 2] = float("inf")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.side(x)
        return self.fc(x)


@pytest.mark.parametrize("budget", [0, 1 << 30], ids=["streamed", "up-front"])
def test_a_weight_that_cannot_be_quantized_is_a_quantize_error_naming_the_layer(budget):
    from quantviz.eval import EvalError

    x = torch.randn(12, 8, generator=torch.Generator().manual_seed(4))
    h = handle_of(_Discarding(), x[:1])
    data = EvalData("t", x, None, x[:4])
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=4, granularity="per_channel")))
    with pytest.raises(EvalError) as err:
        run(evaluate(h, data, cfg, cache=WeightCache(budget)))
    assert err.value.stage == "quantize" and "layer side: weight" in str(err.value)
    assert h.module.side.weight[1, 2] == float("inf")  # the float model is back
