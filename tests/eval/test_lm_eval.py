"""Causal LMs: perplexity, KL and top-1 agreement on token data, checked against transformers
and an independent torch fake-quant written here; bad token data; the .txt path."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from quantviz.cli import main
from quantviz.core import LayerConfig, ModelConfig
from quantviz.core.defaults import DEFAULT_WEIGHT, FLOAT_CONFIG
from quantviz.data import DataError, load_data
from quantviz.data.datasets import EvalData
from quantviz.eval import compute_baseline, evaluate, run
from quantviz.eval.evaluate import LM_LOGITS_BYTES, batch_size_for
from quantviz.eval.sweeps import sensitivity, uniform_sweep
from quantviz.model.lm import handle_from_module
from tests.lm_models import POSITIONS, VOCAB, random_tokens, tiny_gpt2, tiny_llama


@pytest.fixture(scope="module")
def llama():
    return handle_from_module(tiny_llama(), "memory:tiny_llama", "tiny_llama")


def _tokens(x: torch.Tensor, name: str = "tokens") -> EvalData:
    return EvalData(name, x, None, x[:2], task="causal_lm")


def _hf_perplexity(model, x: torch.Tensor) -> float:
    """exp of transformers' own loss with labels = input_ids (one batch: the mean over
    every predicted position)."""
    with torch.no_grad():
        return math.exp(float(model(input_ids=x, labels=x).loss))


def _fake_quant(model, bits: int, group: int):
    """A copy of ``model`` with every Linear and Embedding weight fake-quantized by torch:
    symmetric, one min/max scale per ``group`` consecutive values of a row."""
    q = copy.deepcopy(model)
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    with torch.no_grad():
        for mod in q.modules():
            if isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)):
                w = mod.weight
                g = w.reshape(-1, group)
                scale = (g.abs().amax(1) / ((qmax - qmin) / 2)).clamp_min(
                    torch.finfo(torch.float32).eps
                )
                zp = torch.zeros(g.shape[0], dtype=torch.int32)
                fq = torch.fake_quantize_per_channel_affine(g, scale, zp, 0, qmin, qmax)
                w.copy_(fq.reshape(w.shape))
    return q


def test_llama_is_marked_and_every_layer_found(llama):
    assert llama.task == "causal_lm" and llama.is_causal_lm
    assert llama.meta["vocab_size"] == VOCAB and llama.meta["max_positions"] == POSITIONS
    assert llama.example_input.dtype == torch.int64
    fqns = llama.fqns
    assert "model.embed_tokens" in fqns and "lm_head" in fqns
    assert len(fqns) == 1 + 2 * 7 + 1  # embeddings, 2 blocks x (q k v o gate up down), lm_head


@pytest.mark.parametrize("factory", [tiny_llama, tiny_gpt2])
def test_float_perplexity_equals_transformers(factory):
    model = factory()
    h = handle_from_module(model, "memory", factory.__name__)
    x = random_tokens(5, 20)
    base = run(compute_baseline(h, _tokens(x)))
    assert base.metric == "perplexity" and base.higher_is_better is False
    assert math.isfinite(base.value)
    assert base.value == pytest.approx(_hf_perplexity(model, x), rel=1e-5)
    # the float config evaluates to the same number, with KL 0 and full agreement
    r = run(evaluate(h, _tokens(x), FLOAT_CONFIG, baseline=base))
    assert r.value == pytest.approx(base.value, rel=1e-9)
    assert r.kl == pytest.approx(0.0, abs=1e-9) and r.top1_agreement == 1.0


def test_batches_give_the_same_perplexity(llama):
    x = random_tokens(7, 16)
    one = run(compute_baseline(llama, _tokens(x), batch_size=64)).value
    three = run(compute_baseline(llama, _tokens(x), batch_size=3)).value
    assert three == pytest.approx(one, rel=1e-6)


def test_w4_group_perplexity_and_kl_equal_independent_fake_quant(llama):
    x = random_tokens(6, 24, seed=3)
    spec = DEFAULT_WEIGHT.with_(bits=4, granularity="per_group", group_size=32)
    cfg = ModelConfig(default=LayerConfig(weight=spec))
    r = run(evaluate(llama, _tokens(x), cfg))
    q = _fake_quant(llama.module, 4, 32)
    with torch.no_grad():
        ref = llama.module(input_ids=x).logits[:, :-1].double()
        out = q(input_ids=x).logits[:, :-1].double()
    lp, lq = torch.log_softmax(ref, -1), torch.log_softmax(out, -1)
    kl = torch.nn.functional.kl_div(lq, lp, log_target=True, reduction="none").sum(-1).mean()
    agree = (ref.argmax(-1) == out.argmax(-1)).double().mean()
    assert r.value == pytest.approx(_hf_perplexity(q, x), rel=1e-4)
    assert r.kl == pytest.approx(float(kl), rel=1e-4)
    assert r.top1_agreement == pytest.approx(float(agree), abs=1e-12)
    assert r.value != pytest.approx(r.baseline, rel=1e-6)  # 4 bits changed something
    d = r.to_dict()
    assert d["metric"] == "perplexity" and d["higher_is_better"] is False
    assert d["n_tokens"] == 6 * 23 and d["drop"] == pytest.approx(r.value - r.baseline)
    assert {"value", "baseline", "kl", "top1_agreement"} <= set(d)


def test_lm_batches_are_capped_by_logit_bytes(llama):
    x = random_tokens(4, 16)
    per_seq = 4 * VOCAB * 16
    assert batch_size_for(llama, _tokens(x), 10**9) == LM_LOGITS_BYTES // per_seq
    assert batch_size_for(llama, _tokens(x), 3) == 3


def test_sensitivity_and_sweep_follow_lower_is_better(llama):
    x = random_tokens(4, 16, seed=5)
    data = _tokens(x)
    spec = DEFAULT_WEIGHT.with_(granularity="per_tensor")
    layers = ["model.layers.0.mlp.down_proj", "lm_head", "model.layers.1.self_attn.q_proj"]
    res = run(sensitivity(llama, data, 2, spec, layers=layers))
    assert res.higher_is_better is False
    for f in layers:
        assert res.drop(f) == pytest.approx(res.layer(f).value[2] - res.baseline)
    ranked = res.by_drop()
    assert [res.layer(f).value[2] for f in ranked] == sorted(
        (res.layer(f).value[2] for f in layers), reverse=True
    )  # the most harmful layer (highest perplexity) first
    sweep = run(uniform_sweep(llama, data, (2, 8), spec))
    assert sweep.higher_is_better is False and sweep.to_dict()["higher_is_better"] is False
    w2, w8 = sweep.points
    if w8.value < w2.value:  # 8 bits is both larger and better: both on the front
        assert sweep.front == [w2, w8]


# ---------------------------------------------------------------------------------------
# token data
# ---------------------------------------------------------------------------------------
def _npz(tmp_path, name="tokens.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_npz_token_data_and_seq_len_windows(llama, tmp_path):
    ids = random_tokens(3, 20).numpy()
    d = load_data(_npz(tmp_path, input_ids=ids), llama)
    assert d.task == "causal_lm" and d.x.dtype == torch.int64 and d.n_tokens == 3 * 19
    assert torch.equal(d.x, torch.from_numpy(ids)) and torch.equal(d.calib_x, d.x)
    w = load_data(_npz(tmp_path, input_ids=ids), llama, seq_len=8)
    assert tuple(w.x.shape) == (6, 8) and torch.equal(w.x[1], torch.from_numpy(ids[0, 8:16]))
    calib = random_tokens(2, 20, seed=9).numpy()
    c = load_data(_npz(tmp_path, "c.npz", input_ids=ids, calib_input_ids=calib), llama)
    assert torch.equal(c.calib_x, torch.from_numpy(calib))


@pytest.mark.parametrize(
    ("arrays", "expect"),
    [
        ({"input_ids": np.full((2, 8), VOCAB)}, f"token id {VOCAB} (sequence 0, position 0)"),
        ({"input_ids": np.array([[1, 2, -3]])}, "token id -3 (sequence 0, position 2)"),
        ({"input_ids": np.zeros((2, POSITIONS + 1), np.int64)}, "longer than the 32 positions"),
        ({"input_ids": np.zeros((0, 8), np.int64)}, "empty"),
        ({"input_ids": np.zeros((3, 0), np.int64)}, "empty"),
        ({"input_ids": np.zeros((3, 1), np.int64)}, "at least 2 tokens"),
        ({"input_ids": np.zeros((2, 8), np.float32)}, "must be integers"),
        ({"input_ids": np.zeros(8, np.int64)}, "must be [N, T]"),
        ({"tokens": np.zeros((2, 8), np.int64)}, "no field 'input_ids'"),
        (
            {"input_ids": np.zeros((2, 8), np.int64), "calib_input_ids": np.full((1, 4), 999)},
            "calib_input_ids: token id 999",
        ),
    ],
)
def test_bad_token_data_names_the_file(llama, tmp_path, arrays, expect):
    path = _npz(tmp_path, "bad.npz", **arrays)
    with pytest.raises(DataError) as err:
        load_data(path, llama)
    assert path in str(err.value) and expect in str(err.value)


def test_seq_len_errors(llama, tmp_path):
    path = _npz(tmp_path, input_ids=np.zeros((2, 8), np.int64))
    with pytest.raises(DataError, match="shorter than --seq-len 16"):
        load_data(path, llama, seq_len=16)
    with pytest.raises(DataError, match=r"seq_len \(--seq-len\): must be an integer >= 2"):
        load_data(path, llama, seq_len=1)
    with pytest.raises(DataError, match="not a causal language model|is not one"):
        load_data("sample:digits", None, seq_len=8)


TEXT = (
    "the quick brown fox jumps over the lazy dog. a lazy dog sleeps; the fox runs on. "
    "quantization maps many values to few levels, and the error shows in the output. "
) * 6


def _tokenizer(path):
    """A small BPE (vocabulary <= the tiny models') trained here, saved as tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["[UNK]"]))
    assert tok.get_vocab_size() <= VOCAB
    tok.save(str(path))
    return tok


def test_text_file_is_tokenized_into_windows(tmp_path):
    tok = _tokenizer(tmp_path / "tokenizer.json")
    h = handle_from_module(tiny_llama(), "m", "m", tokenizer_path=tmp_path / "tokenizer.json")
    txt = tmp_path / "doc.txt"
    txt.write_text(TEXT, encoding="utf-8")
    ids = tok.encode(TEXT).ids
    d = load_data(str(txt), h, seq_len=10)
    n = len(ids) // 10
    assert tuple(d.x.shape) == (n, 10)
    assert d.x.flatten().tolist() == ids[: n * 10]
    default = load_data(str(txt), h)  # 128 is longer than the model: its 32 positions
    assert default.x.shape[1] == POSITIONS
    with pytest.raises(DataError, match="longer than the 32 positions"):
        load_data(str(txt), h, seq_len=64)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError, match=f"{empty}: empty"):
        load_data(str(empty), h)
    short = tmp_path / "short.txt"
    short.write_text("the fox", encoding="utf-8")
    with pytest.raises(DataError, match="fewer than one window of 10"):
        load_data(str(short), h, seq_len=10)
    no_tok = handle_from_module(tiny_llama(), "m", "m")
    with pytest.raises(DataError, match="has none; give token ids as an .npz"):
        load_data(str(txt), no_tok)


def test_cli_eval_text_with_seq_len(tmp_path, capsys):
    """``quantviz eval --data doc.txt --seq-len 12 --json`` on a Llama saved as a state dict
    with its architecture factory; tokenizer.json beside the weights."""
    from safetensors.torch import save_file

    tok = _tokenizer(tmp_path / "tokenizer.json")
    model = tiny_llama()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp_path / "w.safetensors")
    txt = tmp_path / "doc.txt"
    txt.write_text(TEXT, encoding="utf-8")
    src = f"{tmp_path / 'w.safetensors'}::tests.lm_models:tiny_llama"
    argv = ["eval", "-m", src, "--data", str(txt), "--seq-len", "12", "--json", "--no-progress"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    ids = torch.tensor(tok.encode(TEXT).ids)
    x = ids[: len(ids) // 12 * 12].reshape(-1, 12)
    assert doc["metric"] == "perplexity" and doc["higher_is_better"] is False
    assert doc["n_tokens"] == x.shape[0] * 11
    assert doc["baseline"] == pytest.approx(_hf_perplexity(model, x), rel=1e-5)
    assert 0 <= doc["kl"] < 0.01 and 0.9 <= doc["top1_agreement"] <= 1
    # the same model on a non-LM data file, and out-of-vocabulary ids: one-line errors
    bad = _npz(tmp_path, "bad.npz", input_ids=np.full((2, 8), 500))
    assert main(["eval", "-m", src, "--data", bad, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("quantviz: error:") and bad in err and "token id 500" in err


def test_text_data_for_a_classifier_is_refused(tmp_path):
    from quantviz.model import load_model

    h = load_model("sample:digits_cnn")
    txt = tmp_path / "doc.txt"
    txt.write_text(TEXT, encoding="utf-8")
    with pytest.raises(DataError, match="causal language model"):
        load_data(str(txt), h)
    with pytest.raises(DataError, match="--seq-len"):
        load_data("sample:digits", h, seq_len=8)
