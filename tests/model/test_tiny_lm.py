"""The bundled ``sample:tiny_lm``: a real decoder, its perplexity checked against transformers
and an independent torch fake-quant of the same weights."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

pytest.importorskip("transformers")

pytestmark = pytest.mark.slow  # a 4.7M-parameter model on 64 x 128 tokens, several times

from quantviz.cli import main  # noqa: E402
from quantviz.core import LayerConfig, ModelConfig  # noqa: E402
from quantviz.core.defaults import DEFAULT_CONFIG, DEFAULT_WEIGHT  # noqa: E402
from quantviz.data import load_data  # noqa: E402
from quantviz.eval import compute_baseline, evaluate, run  # noqa: E402
from quantviz.model import load_model  # noqa: E402
from quantviz.model.samples import sample_dir  # noqa: E402

W4G128 = ModelConfig(
    default=LayerConfig(
        weight=DEFAULT_WEIGHT.with_(bits=4, granularity="per_group", group_size=128)
    )
)


@pytest.fixture(scope="module")
def lm():
    return load_model("sample:tiny_lm")


@pytest.fixture(scope="module")
def data(lm):
    return load_data(None, lm)


@pytest.fixture(scope="module")
def reference():
    """The same checkpoint opened by transformers on its own (not through quantviz)."""
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(
        str(sample_dir("tiny_lm")), local_files_only=True, dtype=torch.float32
    ).eval()


@pytest.fixture(scope="module")
def baseline(lm, data):
    return run(compute_baseline(lm, data))


def _hf_perplexity(model, x):
    with torch.no_grad():
        return math.exp(float(model(input_ids=x, labels=x).loss))


def test_sample_is_a_small_llama_with_its_tokenizer_and_split(lm, data):
    from tokenizers import Tokenizer

    m = lm.module
    cfg = m.config
    assert lm.is_causal_lm and type(m).__name__ == "LlamaForCausalLM"
    assert cfg.num_hidden_layers >= 4 and cfg.hidden_size == 256
    assert type(m.model.layers[0].input_layernorm).__name__ == "LlamaRMSNorm"
    assert 3_000_000 < lm.total_params < 8_000_000
    # every linear of every block, the embeddings and lm_head
    assert len(lm.layers) == 1 + 7 * cfg.num_hidden_layers + 1
    assert {"model.embed_tokens", "lm_head", "model.layers.3.mlp.down_proj"} <= set(lm.fqns)
    assert Tokenizer.from_file(lm.tokenizer_path).get_vocab_size() == cfg.vocab_size
    assert data.name == "sample:tiny_lm" and tuple(data.x.shape) == (64, 128)
    assert int(data.x.max()) < cfg.vocab_size
    assert data.calib_x is not None and tuple(data.calib_x.shape) == (64, 128)


# the topics held out of training (sample_data/PROVENANCE.md)
HELD_OUT = [
    "numbers",
    "attribute-access",
    "class",
    "truth",
    "operator-summary",
    "binary",
    "strings",
    "formatstrings",
]


def _fragments(tok, rows: torch.Tensor) -> list[str]:
    """Each row decoded, cut at <|endoftext|> (id 0) and at bytes a window boundary split."""
    out = []
    for row in rows.tolist():
        pieces: list[list[int]] = [[]]
        for t in row:
            if t == 0:
                pieces.append([])
            else:
                pieces[-1].append(t)
        for p in pieces:
            out += [f for f in tok.decode(p).split("\ufffd") if len(f) >= 40]
    return out


def test_evaluation_text_is_held_out_and_calibration_is_training_text(lm, data):
    """The split, read back as text: every evaluation window comes from the held-out topics,
    every calibration window from the others (GPTQ / SmoothQuant never see the test text)."""
    from pydoc_data.topics import topics

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(lm.tokenizer_path)
    held = [topics[n] for n in HELD_OUT]
    train = [v for k, v in topics.items() if k not in HELD_OUT]
    ev, cal = _fragments(tok, data.x), _fragments(tok, data.calib_x)
    assert len(ev) >= 64 and len(cal) >= 64
    assert all(any(f in t for t in held) for f in ev)
    assert all(any(f in t for t in train) for f in cal)
    # (the documentation repeats a few paragraphs across topics: compare with the evaluated
    # text itself, not with whole held-out topics)
    evaluated = "\n".join(ev)
    assert not any(f in evaluated for f in cal)


def test_float_perplexity_equals_transformers(baseline, data, reference):
    assert math.isfinite(baseline.value) and 1 < baseline.value < 1000
    assert baseline.value == pytest.approx(_hf_perplexity(reference, data.x), rel=1e-5)


def test_w8_per_channel_within_one_percent(lm, data, baseline):
    r = run(evaluate(lm, data, DEFAULT_CONFIG, baseline=baseline))
    assert abs(r.value - r.baseline) / r.baseline < 0.01
    assert r.n_tokens == 64 * 127 and r.kl is not None and r.kl < 0.01


def test_w4_g128_equals_independent_fake_quant(lm, data, baseline, reference):
    r = run(evaluate(lm, data, W4G128, baseline=baseline))
    q = copy.deepcopy(reference)
    with torch.no_grad():
        for mod in q.modules():
            if isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)):
                w = mod.weight
                g = w.reshape(-1, 128)
                scale = (g.abs().amax(1) / 7.5).clamp_min(torch.finfo(torch.float32).eps)
                zp = torch.zeros(g.shape[0], dtype=torch.int32)
                fq = torch.fake_quantize_per_channel_affine(g, scale, zp, 0, -8, 7)
                w.copy_(fq.reshape(w.shape))
        x = data.x
        lp = torch.log_softmax(reference(input_ids=x).logits[:, :-1].double(), -1)
        lq = torch.log_softmax(q(input_ids=x).logits[:, :-1].double(), -1)
    kl = torch.nn.functional.kl_div(lq, lp, log_target=True, reduction="none").sum(-1).mean()
    assert r.value == pytest.approx(_hf_perplexity(q, x), rel=1e-4)
    assert r.kl == pytest.approx(float(kl), rel=1e-4)
    assert r.value > r.baseline  # 4 bits cost something


def test_cli_eval_document(capsys):
    assert main(["eval", "--model", "sample:tiny_lm", "--json", "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["metric"] == "perplexity" and doc["higher_is_better"] is False
    assert doc["data"] == "sample:tiny_lm" and doc["n_tokens"] == 64 * 127
    for key in ("value", "baseline", "kl", "top1_agreement"):
        assert isinstance(doc[key], float)
    assert doc["drop"] == pytest.approx(doc["value"] - doc["baseline"])
