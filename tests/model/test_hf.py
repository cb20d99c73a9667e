"""Hugging Face checkpoint folders: tiny GPT-2, Llama, OPT and BERT built from configs.

Quantized outputs are compared with an independent fake-quant written here with torch
(``torch.ao`` observers + ``torch.fake_quantize_per_channel_affine``), applied to a model
transformers loads by itself: GPT-2's ``Conv1D`` weights are quantized per output feature
on their stored axis 1, groups run along the input features, tied weights once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hf_models import HIDDEN, POSITIONS, VOCAB, expected_layers, save

tf = pytest.importorskip("transformers")

from quantviz.core import LayerConfig, ModelConfig, QuantSpec  # noqa: E402
from quantviz.eval import apply_config  # noqa: E402
from quantviz.model import ModelLoadError, TrustRequired, detect_kind, load_model  # noqa: E402

# (kind, tied, sharded): GPT-2 and OPT tie lm_head to the token embedding by default
VARIANTS = {
    "gpt2": ("gpt2", True, False),
    "gpt2_untied_sharded": ("gpt2", False, True),
    "llama": ("llama", False, False),
    "llama_tied_sharded": ("llama", True, True),
    "opt": ("opt", True, False),
    "bert": ("bert", False, False),
}
W8_CH = QuantSpec(bits=8, granularity="per_channel")
W4_G32 = QuantSpec(bits=4, granularity="per_group", group_size=32)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for name, (kind, tied, sharded) in VARIANTS.items():
        over = {"tie_word_embeddings": tied} if kind != "bert" else {}
        out[name] = save(kind, root / name, shard="40KB" if sharded else None, **over)
    return out


def tokens(n: int = 3, t: int = 12, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (n, t), generator=g)


# -- an independent fake-quant -----------------------------------------------------------------
def ref_fake_quant(w: torch.Tensor, out_axis: int, bits: int, group: int | None) -> torch.Tensor:
    """Symmetric min/max fake-quant of a 2-D weight with torch.ao: per output feature
    (``out_axis`` of the stored weight) or per ``group`` inputs of each output feature."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    x = w.detach().float()
    rows = x if out_axis == 0 else x.t()  # [out, in]
    if group is not None:
        rows = rows.reshape(-1, group)
    obs = torch.ao.quantization.PerChannelMinMaxObserver(
        ch_axis=0,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        quant_min=qmin,
        quant_max=qmax,
    )
    obs(rows)
    scale, zp = obs.calculate_qparams()
    fq = torch.fake_quantize_per_channel_affine(rows, scale, zp.to(torch.int32), 0, qmin, qmax)
    fq = fq.reshape(x.shape if out_axis == 0 else x.t().shape)
    fq = fq if out_axis == 0 else fq.t()
    return fq.to(w.dtype)


def ref_quantize_model(model: torch.nn.Module, bits: int, group: int | None) -> int:
    """Fake-quantize every Linear / Conv1D / Embedding weight of ``model`` in place (tied
    weights once); returns how many distinct weights were quantized."""
    from transformers.pytorch_utils import Conv1D

    done: set[int] = set()
    for mod in model.modules():
        if isinstance(mod, Conv1D):
            axis = 1  # stored [in, out]
        elif isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)):
            axis = 0
        else:
            continue
        p = mod.weight
        if id(p) in done:
            continue
        done.add(id(p))
        p.data = ref_fake_quant(p.data, axis, bits, group)
    return len(done)


def logits(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out[0]


# -- tests ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(VARIANTS))
def test_layers_found(folders: dict[str, Path], name: str) -> None:
    kind, tied, sharded = VARIANTS[name]
    folder = folders[name]
    assert (folder / "model.safetensors.index.json").is_file() == sharded
    h = load_model(str(folder))
    want = expected_layers(kind, tied)
    assert sorted(h.fqns) == sorted(want)
    assert len(h.layers) == len(want)
    assert h.flavour == "nn" and h.meta["file_kind"] == "huggingface"
    assert h.task == ("base" if kind == "bert" else "causal_lm")
    assert h.is_causal_lm == (kind != "bert")
    assert h.tokenizer_path is None
    assert h.example_input.dtype == torch.int64 and h.example_input.shape == (1, 16)
    emb = h.layer(want[0])
    assert emb.kind == "embedding"
    if kind != "bert":
        assert emb.tied == (("lm_head.weight",) if tied else ())
        # the tied layer pays for the head's matrix product: tokens x vocab x hidden
        assert emb.macs == (16 * VOCAB * HIDDEN if tied else 0)
    for lay in h.layers:
        w = h.weight(lay.fqn)
        assert tuple(w.shape) == lay.stored_shape
        assert tuple(h.quant_weight(lay.fqn).shape) == lay.weight_shape
        if lay.class_name == "Conv1D":  # GPT-2: stored [in, out], output features on axis 1
            assert lay.kind == "linear" and lay.channel_axis == 1
            assert lay.weight_shape == (w.shape[1], w.shape[0])
            assert lay.macs == 16 * w.shape[0] * w.shape[1]
        else:
            assert lay.channel_axis == 0
    if kind == "gpt2":
        assert h.layer("transformer.h.0.attn.c_attn").weight_shape == (3 * HIDDEN, HIDDEN)


@pytest.mark.parametrize("spec", [W8_CH, W4_G32], ids=["w8_channel", "w4_group32"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_quantized_output_equals_independent_fake_quant(
    folders: dict[str, Path], name: str, spec: QuantSpec
) -> None:
    folder = folders[name]
    h = load_model(str(folder))
    x = tokens()
    ref_model = tf.AutoModel.from_pretrained(str(folder), local_files_only=True)
    if VARIANTS[name][0] != "bert":
        ref_model = tf.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    ref_model.eval()
    with torch.no_grad():
        float_ref = logits(ref_model(x))
        float_ours = logits(h.module(x))
    torch.testing.assert_close(float_ours, float_ref, rtol=0, atol=0)
    group = spec.group_size if spec.granularity == "per_group" else None
    n = ref_quantize_model(ref_model, spec.bits, group)
    assert n == len(h.layers)
    cfg = ModelConfig(default=LayerConfig(weight=spec, activation=None))
    with torch.no_grad():
        want = logits(ref_model(x))
        with apply_config(h, cfg):
            got = logits(h.module(x))
        after = logits(h.module(x))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(want, float_ref, atol=1e-4)  # quantization did something
    torch.testing.assert_close(after, float_ours, rtol=0, atol=0)  # restored exactly


def test_tied_weight_counted_once_and_quantized_with_the_head(folders: dict[str, Path]) -> None:
    from quantviz.eval import size_of

    tied = load_model(str(folders["gpt2"]))
    untied = load_model(str(folders["gpt2_untied_sharded"]))
    emb_bytes = VOCAB * HIDDEN * 4
    _, f_tied = size_of(tied, ModelConfig())
    _, f_untied = size_of(untied, ModelConfig())
    assert f_untied - f_tied == emb_bytes  # the head's own matrix only when untied
    assert tied.float_bytes + emb_bytes == untied.float_bytes
    assert sum(lay.params for lay in tied.layers) + emb_bytes // 4 == sum(
        lay.params for lay in untied.layers
    )
    head = tied.module.lm_head.weight
    emb = tied.module.transformer.wte.weight
    cfg = ModelConfig(
        default=LayerConfig(weight=None), overrides={"transformer.wte": LayerConfig()}
    )
    before = head.detach().clone()
    with apply_config(tied, cfg):
        assert torch.equal(tied.module.lm_head.weight, tied.module.transformer.wte.weight)
        assert not torch.equal(tied.module.lm_head.weight, before)
        want = ref_fake_quant(before, 0, 8, None)  # default QuantSpec: W8 per tensor
        qs = torch.ao.quantization.MinMaxObserver(
            dtype=torch.qint8, qscheme=torch.per_tensor_symmetric
        )
        qs(before)
        s, z = qs.calculate_qparams()
        want = torch.fake_quantize_per_tensor_affine(before, float(s), int(z), -128, 127)
        torch.testing.assert_close(tied.module.lm_head.weight, want, rtol=0, atol=0)
    assert torch.equal(head, before) and emb is tied.module.transformer.wte.weight


def test_bf16_checkpoint_stays_bf16(tmp_path: Path) -> None:
    from hf_models import build

    folder = tmp_path / "bf16"
    m = build("gpt2").to(torch.bfloat16)
    m.save_pretrained(str(folder))
    h = load_model(str(folder))
    assert {p.dtype for p in h.module.parameters()} == {torch.bfloat16}
    assert h.meta["dtype"] == "bfloat16"
    ref = tf.GPT2LMHeadModel.from_pretrained(str(folder), dtype=torch.bfloat16).eval()
    ref_quantize_model(ref, 8, None)
    x = tokens()
    with torch.no_grad(), apply_config(h, ModelConfig(default=LayerConfig(weight=W8_CH))):
        got = h.module(x).logits
        for lay in h.layers:  # the fake-quantized weights are bf16, like the checkpoint
            assert h.weight(lay.fqn).dtype == torch.bfloat16
    with torch.no_grad():
        want = ref(x).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_weights_are_memory_mapped_from_the_safetensors(folders: dict[str, Path]) -> None:
    folder = folders["gpt2_untied_sharded"]
    h = load_model(str(folder))
    spans = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if str(folder) in line and line.endswith(".safetensors"):
            a, b = (int(v, 16) for v in line.split()[0].split("-"))
            spans.append((a, b))
    assert spans
    params = list(h.module.parameters())
    inside = [p for p in params if any(a <= p.data_ptr() < b for a, b in spans)]
    assert len(inside) == len(params)


def test_histogram_view_and_sqnr_of_bf16_conv1d_weights(tmp_path: Path) -> None:
    """The inspector's per-channel view of a Conv1D weight is per output feature."""
    from hf_models import build

    from quantviz.app import AppController, run_job

    folder = tmp_path / "bf16"
    build("gpt2").to(torch.bfloat16).save_pretrained(str(folder))
    ctl = AppController()
    run_job(ctl.open_model_job(str(folder)))
    fqn = "transformer.h.0.mlp.c_fc"
    stored = ctl.session.handle.weight(fqn).detach()  # [in, out] = [64, 256], bf16
    assert stored.dtype == torch.bfloat16 and stored.shape == (HIDDEN, 4 * HIDDEN)
    d = ctl.layer_view(fqn, compare="nf4", channel=5, spec=W8_CH)
    assert not d.error and not d.compare_error
    assert d.rows == 4 * HIDDEN and d.row_kind == "channel"
    np.testing.assert_array_equal(d.chan_min, stored.float().amin(dim=0).numpy())
    np.testing.assert_array_equal(d.chan_max, stored.float().amax(dim=0).numpy())
    # its SQNR: of the weight against an independent per-output-feature fake-quant, as the
    # model holds it (rounded to bf16)
    ref = ref_fake_quant(stored, 1, 8, None)
    assert ref.dtype == torch.bfloat16
    err = (stored.float() - ref.float()).pow(2).sum()
    want = 10 * torch.log10(stored.float().pow(2).sum() / err).item()
    assert d.main.sqnr_db == pytest.approx(want, abs=1e-3)
    g = ctl.layer_view(fqn, channel=0, spec=W4_G32)
    assert not g.error and g.rows == 4 * HIDDEN * HIDDEN // 32


def test_example_input_from_data_and_input_shape(folders: dict[str, Path], tmp_path: Path) -> None:
    from quantviz.data import load_data, load_model_for_data

    data = tmp_path / "tokens.npz"
    np.savez(data, x=tokens(5, 20).numpy())
    h = load_model_for_data(str(folders["llama"]), str(data))
    assert h.example_input.shape == (1, 20) and h.example_input.dtype == torch.int64
    d = load_data(str(data), h)
    assert d.x.shape == (5, 20)
    h2 = load_model(str(folders["llama"]), input_shape=(1, 8))
    assert h2.example_input.shape == (1, 8) and h2.example_input.dtype == torch.int64


def test_logits_are_what_metrics_read(folders: dict[str, Path], tmp_path: Path) -> None:
    from quantviz.data import load_data
    from quantviz.eval import evaluate, run
    from quantviz.eval.forward import model_output

    h = load_model(str(folders["opt"]))
    x = tokens(2, 16)
    with torch.no_grad():
        raw = h.module(x)
    assert "class_dim" not in h.meta  # nothing to move: next-token logits
    out = model_output(h, raw)
    assert torch.equal(out, raw.logits)  # a causal LM's [batch, tokens, vocab], as it is
    data = tmp_path / "t.npz"
    np.savez(data, x=tokens(6, 16).numpy())
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=3, granularity="per_channel")))
    res = run(evaluate(h, load_data(str(data), h), cfg, batch_size=4))
    # the same numbers from the logits of an independently quantized model: per token
    ref = tf.OPTForCausalLM.from_pretrained(str(folders["opt"])).eval()
    xs = torch.from_numpy(np.load(data)["x"])
    with torch.no_grad():
        f = ref(xs).logits
        ref_quantize_model(ref, 3, None)
        q = ref(xs).logits
    f, q = f[:, :-1], q[:, :-1]  # the positions that predict a next token
    agree = (f.argmax(-1) == q.argmax(-1)).double().mean().item()
    assert res.metric == "perplexity" and res.higher_is_better is False
    assert res.top1_agreement == pytest.approx(agree, abs=1e-12)
    lp, lq = torch.log_softmax(f.double(), -1), torch.log_softmax(q.double(), -1)
    kl = (lp.exp() * (lp - lq)).sum(-1).clamp_min(0).mean().item()
    assert res.kl == pytest.approx(kl, rel=1e-6)


@pytest.mark.parametrize(
    ("cls_name", "task", "classes"),
    [
        ("BertForMaskedLM", "masked_lm", VOCAB),
        ("BertForTokenClassification", "token_classification", 5),
    ],
)
def test_classes_on_last_dim_are_read_per_token(
    tmp_path: Path, cls_name: str, task: str, classes: int
) -> None:
    """A masked LM's / token classifier's [batch, tokens, classes] logits: one prediction per
    token, the class dim moved to 1 for the metrics; the numbers match an independently
    quantized model read token by token."""
    from quantviz.data import load_data
    from quantviz.eval import evaluate, run
    from quantviz.eval.forward import model_output

    cfg = tf.BertConfig(
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=VOCAB,
        max_position_embeddings=POSITIONS,
        pad_token_id=0,
        num_labels=classes,
    )
    torch.manual_seed(0)
    getattr(tf, cls_name)(cfg).save_pretrained(str(tmp_path / "m"))
    h = load_model(str(tmp_path / "m"))
    assert h.task == task and not h.is_causal_lm and h.meta["class_dim"] == -1
    x = tokens(2, 16)
    with torch.no_grad():
        raw = h.module(x)
    assert raw.logits.shape == (2, 16, classes)
    assert torch.equal(model_output(h, raw), raw.logits.movedim(-1, 1))
    data = tmp_path / "t.npz"
    np.savez(data, x=tokens(6, 16).numpy())
    qcfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=3, granularity="per_channel")))
    res = run(evaluate(h, load_data(str(data), h), qcfg, batch_size=4))
    ref = getattr(tf, cls_name).from_pretrained(str(tmp_path / "m")).eval()
    xs = torch.from_numpy(np.load(data)["x"])
    with torch.no_grad():
        f = ref(xs).logits
        ref_quantize_model(ref, 3, None)
        q = ref(xs).logits
    assert res.metric == "top1_agreement"
    agree = (f.argmax(-1) == q.argmax(-1)).double().mean().item()  # over every token
    assert res.top1_agreement == pytest.approx(agree, abs=1e-12)
    assert res.value == pytest.approx(agree, abs=1e-12)
    lp, lq = torch.log_softmax(f.double(), -1), torch.log_softmax(q.double(), -1)
    kl = (lp.exp() * (lp - lq)).sum(-1).clamp_min(0).mean().item()
    assert res.kl == pytest.approx(kl, rel=1e-6)


# -- exports ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gpt2", "llama", "bert"])
def test_safetensors_export_loads_back(folders: dict[str, Path], name: str, tmp_path: Path) -> None:
    from quantviz.io.exporters import export
    from quantviz.io.exporters.safetensors_fmt import load_quantized

    h = load_model(str(folders[name]))
    cfg = ModelConfig(default=LayerConfig(weight=W4_G32))
    out = tmp_path / "q.safetensors"
    export(h, cfg, "safetensors", out)
    back = load_quantized(out)
    ref = tf.AutoModel.from_pretrained(str(folders[name]))
    if name != "bert":
        ref = tf.AutoModelForCausalLM.from_pretrained(str(folders[name]))
    ref_quantize_model(ref, 4, 32)
    want = ref.state_dict()
    assert set(back) == set(want)
    for k, v in want.items():
        torch.testing.assert_close(back[k], v, rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("name", ["gpt2", "bert"])
def test_onnx_export_runs_in_onnxruntime(
    folders: dict[str, Path], name: str, tmp_path: Path
) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from quantviz.io.exporters import export

    h = load_model(str(folders[name]))
    out = tmp_path / "q.onnx"
    res = export(h, ModelConfig(default=LayerConfig(weight=W8_CH)), "onnx", out)
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    # BERT's pooler does not feed the exported output (last_hidden_state): named, kept float
    assert [f for f, _ in res.unsupported] == (["pooler.dense"] if name == "bert" else [])
    assert res.details["qdq_weights"] == len(h.layers) - len(res.unsupported)
    x = tokens(3, 16)
    # onnxruntime's graph optimizations fuse DequantizeLinear + Gemm into an integer kernel
    # that also quantizes the activations (a 1e-3 difference): run the graph as written
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    got = ort.InferenceSession(str(out), so).run(None, {"input": x.numpy()})[0]
    ref = tf.AutoModel.from_pretrained(str(folders[name]))
    if name != "bert":
        ref = tf.AutoModelForCausalLM.from_pretrained(str(folders[name]))
    ref_quantize_model(ref.eval(), 8, None)
    with torch.no_grad():
        want = logits(ref(x)).numpy()
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


# -- the command line ------------------------------------------------------------------------------
def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``quantviz ARGS`` in-process: (exit status, stdout, stderr)."""
    from quantviz.cli import main

    capsys.readouterr()
    code = main([*args, "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_eval_json(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "tokens.npz"
    np.savez(data, x=tokens(4, 10).numpy())
    for name in ("gpt2", "llama_tied_sharded", "opt", "bert"):
        code, out, err = _cli(
            capsys, "eval", "--model", str(folders[name]), "--data", str(data), "--json"
        )
        assert code == 0, err
        doc = json.loads(out)
        # causal LMs are measured by perplexity; BERT (masked LM) by agreement with float
        want = "top1_agreement" if name == "bert" else "perplexity"
        assert doc["metric"] == want and doc["n_samples"] == 4
        assert len(doc["layers"]) == len(load_model(str(folders[name])).layers)


def test_cli_export_safetensors(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from quantviz.io.exporters.safetensors_fmt import load_quantized

    cfg = tmp_path / "w4.yaml"
    cfg.write_text("format: quantviz-config\nversion: 2\ndefault:\n  weight: {bits: 4}\n")
    path = tmp_path / "q.safetensors"
    code, out, err = _cli(
        capsys,
        "export",
        "--model",
        str(folders["gpt2"]),
        "-c",
        str(cfg),
        "-f",
        "safetensors",
        "-o",
        str(path),
    )
    assert code == 0, err
    assert out.strip() == f"wrote {path}"
    back = load_quantized(path)
    assert back["lm_head.weight"] is back["transformer.wte.weight"]
    assert back["transformer.h.0.attn.c_attn.weight"].shape == (HIDDEN, 3 * HIDDEN)


def test_cli_bad_inputs_exit_2(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    code, _out, err = _cli(capsys, "eval", "--model", str(empty))
    assert code == 2
    assert err.startswith("quantviz: error:") and "config.json" in err
    d = shutil.copytree(folders["gpt2"], tmp_path / "remote")
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_x.X"}
    (d / "config.json").write_text(json.dumps(cfg))
    code, _out, err = _cli(capsys, "sweep", "--model", str(d), "--bits", "4")
    assert code == 2 and "auto_map" in err and "--trust" in err
    data = tmp_path / "floats.npz"
    np.savez(data, x=np.zeros((3, 8), np.float32))
    code, _out, err = _cli(capsys, "eval", "--model", str(folders["gpt2"]), "--data", str(data))
    assert code == 2
    assert "floats.npz" in err and "(8,) float32" in err and "int64" in err


# -- bad input ------------------------------------------------------------------------------------
def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"without config\.json"):
        load_model(str(tmp_path))
    with pytest.raises(ModelLoadError, match=r"without config\.json"):
        detect_kind(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert detect_kind(tmp_path) == "huggingface"
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: truncated safetensors file"):
        load_model(str(tmp_path))
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=r"no model\.safetensors or model\.safetensors\.index"):
        load_model(str(tmp_path))


def test_unknown_architecture_is_named(folders: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    d = shutil.copytree(folders["gpt2"], tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["FancyNetForCausalLM"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"config\.json: architecture 'FancyNetForCausalLM'"):
        load_model(str(d))
    cfg["architectures"] = []
    cfg["model_type"] = "fancynet"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"model_type 'fancynet' is not known"):
        load_model(str(d))


def test_missing_and_truncated_shards(folders: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    d = shutil.copytree(folders["gpt2_untied_sharded"], tmp_path / "m")
    shards = sorted(d.glob("model-*.safetensors"))
    assert len(shards) >= 2
    data = shards[-1].read_bytes()
    shards[-1].write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelLoadError, match=rf"{shards[-1].name}: truncated safetensors file"):
        load_model(str(d))
    shards[-1].unlink()
    with pytest.raises(
        ModelLoadError, match=rf"index\.json: points to missing shard.*{shards[-1].name}"
    ):
        load_model(str(d))


def test_remote_code_needs_trust(folders: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    d = shutil.copytree(folders["gpt2"], tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "modeling_evil.py").write_text("raise SystemExit('ran code from the folder')\n")
    with pytest.raises(TrustRequired, match=r"config\.json: its auto_map.*--trust"):
        load_model(str(d))


def test_remote_code_with_trust(
    folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With trust, the folder's own architecture code is imported (as transformers'
    trust_remote_code does), its task read from the auto class auto_map names."""
    import shutil

    import transformers.dynamic_module_utils as dmu

    monkeypatch.setattr(dmu, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    d = shutil.copytree(folders["gpt2"], tmp_path / "tiny")
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(
        architectures=["TinyLM"],
        model_type="tiny_gpt2",
        auto_map={
            "AutoConfig": "configuration_tiny.TinyConfig",
            "AutoModelForCausalLM": "modeling_tiny.TinyLM",
        },
    )
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "configuration_tiny.py").write_text(
        "from transformers import GPT2Config\n\n\n"
        "class TinyConfig(GPT2Config):\n    model_type = 'tiny_gpt2'\n"
    )
    (d / "modeling_tiny.py").write_text(
        "from transformers import GPT2LMHeadModel\n\n"
        "from .configuration_tiny import TinyConfig\n\n\n"
        "class TinyLM(GPT2LMHeadModel):\n    config_class = TinyConfig\n"
    )
    with pytest.raises(TrustRequired):
        load_model(str(d))
    h = load_model(str(d), trust=True)
    assert type(h.module).__name__ == "TinyLM" and h.meta["architecture"] == "TinyLM"
    assert h.is_causal_lm
    assert sorted(h.fqns) == sorted(expected_layers("gpt2", tied=True))


def test_data_that_does_not_fit(folders: dict[str, Path], tmp_path: Path) -> None:
    from quantviz.data import DataError, load_model_for_data

    src = str(folders["gpt2"])
    long = tmp_path / "long.npz"
    np.savez(long, x=np.zeros((2, POSITIONS + 1), np.int64))
    with pytest.raises(
        DataError, match=rf"long\.npz: x: sample of {POSITIONS + 1} tokens.*T <= 64"
    ):
        load_model_for_data(src, str(long))
    big = tmp_path / "big.npz"
    np.savez(big, x=np.full((2, 8), VOCAB, np.int64))
    with pytest.raises(DataError, match=rf"big\.npz: x: token ids {VOCAB}\.\.{VOCAB}.*0\.\.127"):
        load_model_for_data(src, str(big))
    img = tmp_path / "img.npz"
    np.savez(img, x=np.zeros((2, 3, 8, 8), np.int64))
    with pytest.raises(DataError, match=r"img\.npz: x: sample of shape \(3, 8, 8\) int64"):
        load_model_for_data(src, str(img))
    with pytest.raises(ModelLoadError, match=r"input_shape \[1, 3, 8\]"):
        load_model(src, input_shape=(1, 3, 8))


@pytest.mark.parametrize("method", ["ste", "lsq", "pact"])
def test_qat_quantizes_conv1d_per_output_feature(
    folders: dict[str, Path], tmp_path: Path, method: str
) -> None:
    """QAT's fake-quant of a Conv1D weight (before any step) is the independent per-output-
    feature fake-quant; a short fine-tune of the tied, Conv1D GPT-2 runs to its evaluation."""
    from quantviz.data import load_data
    from quantviz.eval import run
    from quantviz.eval.qat import QatOptions, _Transposed, _weight_module, finetune

    h = load_model(str(folders["gpt2"]))
    fqn = "transformer.h.0.mlp.c_fc"
    lay = h.layer(fqn)
    w = h.weight(fqn).detach()  # [in, out]
    fq = _Transposed(_weight_module(lay.to_quant(w), W8_CH, method, fqn))
    with torch.no_grad():
        got, want = fq(w), ref_fake_quant(w, 1, 8, None)
    # lsq / pact compute round(w / s) where torch multiplies by 1 / s: a value on a rounding
    # tie may land one step over; on the wrong axis nearly every value would differ
    step = w.abs().amax(dim=0) / 127.5  # the per-output-feature scale
    diff = (got - want).abs()
    assert bool((diff <= step[None, :] * 1.001 + 1e-7).all())
    assert float((diff > 1e-6).float().mean()) < (0.0 if method == "ste" else 0.01) + 1e-9
    data = tmp_path / "t.npz"
    np.savez(data, x=tokens(8, 16).numpy())
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=4, granularity="per_channel")))
    res = run(
        finetune(h, load_data(str(data), h), cfg, QatOptions(epochs=1, method=method, batch_size=4))
    )
    assert res.after.metric == "perplexity" and res.after.value > 1.0
