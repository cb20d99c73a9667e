"""debug() (error propagation) streams a model whose fake-quantized weights exceed the weight
cache's budget: each layer's weight is quantized when its module runs in the quantized pass,
once per batch (the isolated check runs there on the float inputs the float pass kept) —
never a second full copy. The numbers
are bit-identical to the up-front path (tiny GPT-2 with Conv1D and a tied lm_head, tiny
Llama, the digits models with static activations) and one layer's isolated output SQNR
equals a plain-torch computation written here. Also the ``output_sqnr`` proxy."""

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
from quantviz.eval import EvalError, WeightCache, run
from quantviz.eval.apply import quantized_bytes, streams
from quantviz.eval.debug import debug
from quantviz.eval.proxies import output_sqnr
from quantviz.model import load_model

W4G = DEFAULT_WEIGHT.with_(bits=4, granularity="per_group", group_size=32)
W4 = ModelConfig(default=LayerConfig(weight=W4G))


def _numbers(r) -> dict:
    d = r.to_dict()
    d.pop("seconds")
    return d


def _events_and_result(gen):
    events: list = []
    return events, run(gen, events.append)


def _group_fake_quant(rows: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """Plain torch: symmetric, one scale (amax / 7.5 at 4 bits) per ``group`` consecutive
    values of an output row."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    g = rows.reshape(-1, group)
    scale = (g.abs().amax(1) / ((qmax - qmin) / 2)).clamp_min(torch.finfo(torch.float32).eps)
    zp = torch.zeros(g.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(g, scale, zp, 0, qmin, qmax).reshape(rows.shape)


# ---------------------------------------------------------------------------------------
# language models from transformers configs
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request, tmp_path_factory):
    pytest.importorskip("transformers")
    from hf_models import save

    folder = save(request.param, tmp_path_factory.mktemp(request.param))
    return request.param, load_model(str(folder))


def _tokens(vocab: int) -> EvalData:
    x = torch.randint(0, vocab, (6, 24), generator=torch.Generator().manual_seed(3))
    return EvalData("tokens", x, None, x[:2], task="causal_lm")


#: per model: a layer whose isolated error is recomputed in plain torch (GPT-2: a Conv1D)
PROBE = {"gpt2": "transformer.h.1.mlp.c_fc", "llama": "model.layers.1.mlp.down_proj"}


def _plain_isolated_sqnr(kind: str, h, data: EvalData, fqn: str, batch_size: int) -> float:
    """The layer's output with its weight alone fake-quantized (plain torch) vs its float
    output, on the float inputs it receives in a fresh transformers model."""
    from hf_models import build

    m = build(kind)
    m.load_state_dict(h.module.state_dict())
    mod = m.get_submodule(fqn)
    inputs: list[torch.Tensor] = []
    rm = mod.register_forward_pre_hook(lambda _m, a: inputs.append(a[0].detach().clone()))
    with torch.no_grad():
        for a in range(0, data.x.shape[0], batch_size):
            m(input_ids=data.x[a : a + batch_size])
    rm.remove()
    w, b = mod.weight.detach(), mod.bias.detach() if mod.bias is not None else None
    conv1d = kind == "gpt2"  # Conv1D stores [in, out]: output rows are its columns
    wq = _group_fake_quant(w.t() if conv1d else w, 4, 32)
    wq = wq.t() if conv1d else wq
    err = ref = 0.0
    for x in inputs:
        if conv1d:
            y = torch.addmm(b, x.reshape(-1, x.shape[-1]), w)
            yq = torch.addmm(b, x.reshape(-1, x.shape[-1]), wq)
        else:
            y = torch.nn.functional.linear(x, w, b)
            yq = torch.nn.functional.linear(x, wq, b)
        err += float((yq.double() - y.double()).pow(2).sum())
        ref += float(y.double().pow(2).sum())
    return 10.0 * math.log10(ref / err)


def test_lm_debug_streamed_equals_up_front_and_plain_torch(lm):
    kind, h = lm
    data = _tokens(int(h.meta["vocab_size"]))
    if kind == "gpt2":  # the lm_head is the embedding: a tied layer
        assert h.layer("transformer.wte").tied == ("lm_head.weight",)
    big, none = WeightCache(), WeightCache(max_bytes=0)
    assert not streams(h, W4, big) and streams(h, W4, none)
    assert quantized_bytes(h, W4) > 0
    up = run(debug(h, data, W4, cache=big, batch_size=2))
    ev, st = _events_and_result(debug(h, data, W4, cache=none, batch_size=2))
    assert [e.stage for e in ev] == ["debug"] * 3
    assert len(none) == 0  # nothing kept: every weight quantized when its layer ran
    # once per layer per batch (3 batches): the isolated check runs in the quantized pass on
    # the kept float inputs, with the weight that pass quantized; a tied weight once
    assert none.misses == 3 * len(h.fqns)
    assert _numbers(st) == _numbers(up)  # bit for bit: every layer, both errors, the output
    assert {lay.fqn for lay in st.layers} >= set(h.fqns) - {"transformer.wpe"}
    assert st.output.kl > 0 and math.isfinite(st.layers[-1].cumulative.sqnr_db)
    fqn = PROBE[kind]
    plain = _plain_isolated_sqnr(kind, h, data, fqn, 2)
    assert st.layer(fqn).isolated.sqnr_db == pytest.approx(plain, abs=1e-3)


def test_lm_debug_streamed_holds_one_quantized_layer_at_a_time(lm):
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
        run(debug(h, data, W4, cache=WeightCache(0), batch_size=3))
    finally:
        for r in removers:
            r.remove()
    # float and quantized passes: never more than one layer's quantized weight in place
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
def test_digits_debug_streamed_equals_up_front(sample, config):
    h = load_model(f"sample:{sample}")
    full = load_data(None, h)
    data = EvalData(full.name, full.x[:200], full.y[:200], full.calib_x[:128])
    stats: dict = {}
    up = run(debug(h, data, config, cache=WeightCache(), stats=stats, batch_size=100))
    none = WeightCache(0)
    st = run(debug(h, data, config, cache=none, stats=stats, batch_size=100))
    assert len(none) == 0 and none.misses == 2 * len(h.fqns)  # 2 batches, once each
    assert _numbers(st) == _numbers(up)
    assert st.output.kl > 0


def test_a_transformed_config_is_debugged_up_front():
    h = load_model("sample:digits_cnn")
    full = load_data(None, h)
    data = EvalData(full.name, full.x[:100], full.y[:100], full.calib_x[:64])
    cle = W4PC.with_transforms(["cle"])
    none = WeightCache(0)
    assert not streams(h, cle, none)  # transforms rewrite the whole model first
    st = run(debug(h, data, cle, cache=none, batch_size=100))
    up = run(debug(h, data, cle, cache=WeightCache(), batch_size=100))
    assert _numbers(st) == _numbers(up)


# ---------------------------------------------------------------------------------------
# when the model cannot stream, and weights that cannot be quantized
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


def test_a_weight_read_outside_its_module_is_debugged_up_front(caplog):
    x = torch.randn(40, 16, generator=torch.Generator().manual_seed(2))
    h = handle_of(_Functional(), x[:1])
    data = EvalData("t", x, None, x[:8])
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=2, granularity="per_channel")))
    up = run(debug(h, data, cfg, cache=WeightCache(), batch_size=16))
    with caplog.at_level(logging.WARNING, logger="quantviz.eval"):
        events, st = _events_and_result(debug(h, data, cfg, cache=WeightCache(0), batch_size=16))
    assert "fc2" in caplog.text and "up front" in caplog.text
    assert [(e.done, e.total) for e in events] == [(1, 3), (2, 3), (3, 3)]  # monotone
    assert _numbers(st) == _numbers(up)
    # the output error is the whole model's: fc2 quantized too (plain torch per-channel)
    m = _Functional()
    with torch.no_grad():
        ref = m(x)
        for lin in (m.fc1, m.fc2):
            w = lin.weight
            scale = (w.abs().amax(1) / 1.5).clamp_min(torch.finfo(torch.float32).eps)
            zp = torch.zeros(w.shape[0], dtype=torch.int32)
            w.copy_(torch.fake_quantize_per_channel_affine(w, scale, zp, 0, -2, 1))
        out = m(x)
    sqnr = 10 * math.log10(float(ref.double().pow(2).sum() / (out - ref).double().pow(2).sum()))
    assert st.output.sqnr_db == pytest.approx(sqnr, abs=1e-3)


class _Discarding(torch.nn.Module):
    """``side``'s output is computed and dropped: an inf in its weight cannot quantize."""

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
    x = torch.randn(12, 8, generator=torch.Generator().manual_seed(4))
    h = handle_of(_Discarding(), x[:1])
    data = EvalData("t", x, None, x[:4])
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=4, granularity="per_channel")))
    with pytest.raises(EvalError) as err:
        run(debug(h, data, cfg, cache=WeightCache(budget)))
    assert err.value.stage == "quantize" and "layer side: weight" in str(err.value)
    assert h.module.side.weight[1, 2] == float("inf")  # the float model is back
    assert not h.meta.get("_quantviz_applied")


# ---------------------------------------------------------------------------------------
# the output_sqnr proxy
# ---------------------------------------------------------------------------------------
def test_output_sqnr_proxy_streamed_equals_held(lm):
    kind, h = lm
    data = _tokens(int(h.meta["vocab_size"]))
    specs = [W4G, W4G.with_(bits=3), W4G.with_(bits=8)]
    cands = [(f, s) for f in h.fqns for s in specs]
    held = run(output_sqnr(h, data, cands, cache=WeightCache(), batch_size=3))
    none = WeightCache(0)
    st = run(output_sqnr(h, data, cands, cache=none, batch_size=3))
    assert len(none) == 0 and none.misses >= 2 * len(cands)  # checked, then per batch
    assert st.keys() == held.keys()
    assert all(st[k] == held[k] or (math.isnan(st[k]) and math.isnan(held[k])) for k in st)
    fqn = PROBE[kind]
    plain = _plain_isolated_sqnr(kind, h, data, fqn, 3)
    assert st[(fqn, W4G)] == pytest.approx(10.0 ** (-plain / 10.0), rel=1e-4)
    assert st[(fqn, W4G.with_(bits=3))] > st[(fqn, W4G)] > st[(fqn, W4G.with_(bits=8))]


def test_output_kl_in_chunks_equals_plain_torch(monkeypatch):
    from quantviz.eval.debug import _OutputSums

    g = torch.Generator().manual_seed(5)
    f = torch.randn(3, 11, 50, generator=g)
    q = f + 0.3 * torch.randn(3, 11, 50, generator=g)
    monkeypatch.setattr(_OutputSums, "CHUNK", 7 * 50)  # 33 positions: chunks of 7 rows
    sums = _OutputSums()
    sums.add(q.to(torch.bfloat16), f.to(torch.bfloat16))
    got = sums.result()
    qd, fd = q.to(torch.bfloat16).double(), f.to(torch.bfloat16).double()
    kl = torch.nn.functional.kl_div(
        torch.log_softmax(qd, -1), torch.log_softmax(fd, -1), log_target=True, reduction="none"
    ).sum(-1)
    assert got.kl == pytest.approx(float(kl.mean()), rel=1e-9)
    agree = (qd.argmax(-1) == fd.argmax(-1)).double().mean()
    assert got.top1_agreement == pytest.approx(float(agree))


def test_a_cluster_task_streams_past_its_cache():
    """What a Ray task of ``debug --cluster`` runs (:func:`_debug_task`, called here in
    process): with a worker cache that holds nothing it streams, and its sums give the same
    numbers as the in-process run."""
    from types import SimpleNamespace

    from quantviz.eval.debug import _debug_task

    h = load_model("sample:digits_cnn")
    full = load_data(None, h)
    data = EvalData(full.name, full.x[:200], full.y[:200], full.calib_x[:64])
    here = run(debug(h, data, W4PC, cache=WeightCache(), batch_size=100))
    none = WeightCache(0)
    shared = SimpleNamespace(handle=h, data=data, cache=none)
    order, isolated, cumulative, outs = _debug_task(shared, (W4PC, {}, [(0, 100), (100, 200)]))
    assert len(none) == 0 and none.misses == 2 * len(h.fqns)  # streamed, once a batch
    assert order == [lay.fqn for lay in here.layers]
    for lay in here.layers:
        assert isolated[lay.fqn].result() == lay.isolated
        assert cumulative[lay.fqn].result() == lay.cumulative
    assert outs.result() == here.output


# ---------------------------------------------------------------------------------------
# the isolated check deferred to the quantized pass (each weight quantized once a batch)
# ---------------------------------------------------------------------------------------
def test_streamed_float_pass_keeps_a_shared_input_once_and_quantizes_nothing(tmp_path):
    """Llama's q/k/v projections receive one tensor: the streamed float pass keeps one copy
    of it for their deferred isolated checks, equal to the float input, and quantizes no
    weight (the quantized pass does, once)."""
    pytest.importorskip("transformers")

    from hf_models import save

    from quantviz.eval.debug import _config_variants, _Recorder

    h = load_model(str(save("llama", tmp_path)))
    data = _tokens(int(h.meta["vocab_size"]))
    none = WeightCache(0)
    variants = _config_variants(h, W4, none, {}, stream=True)
    rec = _Recorder(h, variants, keep=True, defer=True)
    attn = "model.layers.0.self_attn"
    seen: list[torch.Tensor] = []
    rm = h.module.get_submodule(f"{attn}.q_proj").register_forward_pre_hook(
        lambda _m, a: seen.append(a[0].detach().clone())
    )
    rec.attach()
    try:
        with torch.no_grad():
            h.module(input_ids=data.x[:2])
    finally:
        rec.detach()
        rm.remove()
    assert none.misses == 0 and not rec.isolated  # nothing quantized in the float pass
    kept = {p: rec.float_in[f"{attn}.{p}"][0][0][0] for p in ("q_proj", "k_proj", "v_proj")}
    assert kept["q_proj"] is kept["k_proj"] is kept["v_proj"]
    assert torch.equal(kept["q_proj"], seen[0])
    # an input used by one layer only is its own copy
    down = rec.float_in["model.layers.0.mlp.down_proj"][0][0][0]
    assert (
        down is not kept["q_proj"]
        and down.shape[-1] == h.layer("model.layers.0.mlp.down_proj").weight_shape[-1]
    )


def test_deferred_isolated_checks_the_quantized_pass_missed_are_done_after_it():
    """:meth:`_Recorder.finish`: kept inputs no quantized pass used (here: none ran) are
    checked after it with the weight quantized then — the same numbers as in the float
    pass."""
    from quantviz.eval.debug import _config_variants, _Recorder

    h = load_model("sample:digits_cnn")
    x = load_data(None, h).x[:50]
    sums = []
    for defer in (False, True):
        none = WeightCache(0)
        variants = _config_variants(h, W4PC, none, {}, stream=True)
        rec = _Recorder(h, variants, keep=True, defer=defer)
        rec.attach()
        try:
            with torch.no_grad():
                h.module(x)
        finally:
            rec.detach()
        assert none.misses == (0 if defer else len(h.fqns))
        rec.finish()
        assert none.misses == len(h.fqns)
        assert all(kept is None for ins in rec.float_in.values() for kept in ins)
        sums.append({k: s.result() for k, s in rec.isolated.items()})
    assert sums[1] == sums[0] and len(sums[0]) == len(h.fqns)
    assert all(math.isfinite(s.sqnr_db) for s in sums[0].values())


def test_the_quantized_pass_frees_each_kept_float_tensor_once_used():
    """Streamed: in the quantized pass each layer's kept float input and output are dropped
    as soon as its isolated and cumulative errors are added (the peak stays that of the
    float outputs alone); every weight was quantized once, by that pass."""
    from quantviz.eval import apply_config
    from quantviz.eval.debug import _config_variants, _Recorder

    h = load_model("sample:digits_cnn")
    x = load_data(None, h).x[:50]
    none = WeightCache(0)
    rec = _Recorder(h, _config_variants(h, W4PC, none, {}, stream=True), keep=True, defer=True)
    left: list[int] = []
    last = h.fqns[-1]
    rm = h.module.get_submodule(h.layer(last).module_fqn).register_forward_hook(
        lambda *_: left.append(
            sum(r is not None for v in rec.float_out.values() for r in v)
            + sum(k is not None for v in rec.float_in.values() for k in v)
        )
    )
    rec.attach()
    try:
        with torch.no_grad():
            h.module(x)
            kept = left[-1]
            rec.end_float_pass()
            rec.quantized_pass = True
            with apply_config(h, W4PC, cache=none, stream=True):
                h.module(x)
    finally:
        rec.detach()
        rm.remove()
    # (the probe runs before the recorder's hook) float pass, at the last layer: the
    # inputs and outputs of the others; quantized pass: the last layer's own two only
    assert kept == 2 * (len(h.fqns) - 1)
    assert left[-1] == 2
    assert all(r is None for v in rec.float_out.values() for r in v)
    assert all(k is None for v in rec.float_in.values() for k in v)
    assert none.misses == len(h.fqns) and set(rec.cumulative) == set(h.fqns)
    assert set(rec.isolated) == set(h.fqns)
