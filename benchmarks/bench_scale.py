"""Scale: per-layer kernels against plain-torch references, and whole language models.

Per layer (float32, printed at 1 thread and at torch's default thread count):

* NF4 with 64-value blocks vs bitsandbytes' algorithm in plain torch (absmax per block,
  times its reciprocal, the nearest NF4 code, code times absmax; bitsandbytes itself is not
  installed). Two references: the nearest code by ``bucketize`` over the midpoints (the
  fastest plain-torch way) and by ``argmin |x - code|`` (what bitsandbytes' pure-torch
  backend does), both in 1M-value chunks;
* uniform int4 g128 vs the plain ``amax / round / clamp / mul`` expression;
* the cost of the SQNR on top of quantizing (int4 g128; metrics fused into the pass);
* k-means 16 levels (per tensor and per channel) and uniform 4-bit ``mse`` calibration per
  tensor on 16.8M values (target <= 1 s; the sorted-rows cache is cleared before each call);
* the TinyLlama embedding's shape in bfloat16 (65.5M values): the streamed histogram vs a
  float32 copy + ``histc``, W4 g128 quantize + SQNR vs the plain expression + SQNR.

``ratio`` = quantviz / reference (< 1: quantviz faster); "bit-identical" is checked.

Whole models, each stage in a fresh subprocess that opens the checkpoint (so every peak RSS
is that of the open plus the stage, nothing inherited): a GPT-2
124M-shaped model and a TinyLlama 1.1B-shaped one (``LlamaConfig`` hidden 2048, 22 layers,
intermediate 5632, 32 heads, 4 kv heads, vocab 32000), random init, written with
``save_pretrained`` to a temp dir (GPT-2 float32, TinyLlama bfloat16 safetensors), then:

* ``from_pretrained`` + one forward (the reference of "open");
* ``quantviz.model.load_model(DIR)`` -> layers found; peak RSS (``VmHWM``, reset per stage
  through ``/proc/self/clear_refs``) as a ratio to the checkpoint's bytes;
* SQNR of every layer at W4 g128 (the controller's ``compute_sqnr`` path);
* a bits change 8 -> 4 g128 on the largest layer (the embedding): histogram + grid data
  (``core.layer_view``, what the GUI's worker computes);
* the same in the real histogram view (offscreen Qt): select the embedding at W8 g128,
  then bits 8 -> 4: time to the repainted plot and the longest GUI-thread stall (a 5 ms
  timer probe, as ``bench_gui.py``); targets <= 1 s / <= 1.5 s, stall <= 50 ms;
* a weight-only W4 g128 forward on 4 x 128 tokens (``eval.apply_config``, quantization
  included) vs the float forward, next-token cross-entropy of both; then the same with
  ``stream=True`` and no weight cache (one layer's quantized weight at a time);
* ``quantviz.eval.evaluate`` W4 g128 perplexity on the 4 x 128 tokens as the CLI and the
  GUI run it (default 1 GiB weight cache: streamed when the quantized weights do not fit),
  vs the float evaluation of the same tokens; the same in 4 batches of one sequence, with
  every weight up front (a cache that holds them all: the path before streaming), and
  (GPT-2 and ``llamasmall``) with the ``hadamard`` / ``smoothquant`` transforms;
* ``quantviz.eval.debug.debug`` (error propagation, W4 g128, the same tokens) as the CLI and
  the GUI run it (``debug``: streamed past the cache), in 4 batches of one sequence
  (``debug1``) and with every weight up front (``debugup``), vs one float forward;
  ``osqnr``: the ``output_sqnr`` sensitivity proxy of every layer at W4 g128.

    python benchmarks/bench_scale.py [--skip-layers] [--models gpt2,tinyllama] [--keep DIR]
        [--parts open,eval,...] [--max-rss GB]

``--models llamasmall`` is GPT-2 124M's size in Llama's shape (hidden 1024, 6 layers, 143M
parameters, float32), which the transforms rewrite (``hadamard`` finds nothing to rotate
in GPT-2). ``--models llama3b`` adds an OpenLLaMA-3B-shaped model (hidden 3200, 26 layers, 3.4B
parameters, 6.9 GB bf16); with ``--max-rss`` a stage passing that resident size is stopped
and reported, so the run finds what breaks first without taking the machine down.

``--keep DIR`` writes the checkpoints to ``DIR/<model>`` and reuses them on the next run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

GB = 1e9


# ---------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------
def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak() -> int:
    return _status("VmHWM")


def rss() -> int:
    return _status("VmRSS")


# ---------------------------------------------------------------------------------------
# per layer
# ---------------------------------------------------------------------------------------
def _nf4_code() -> torch.Tensor:
    """QLoRA's NF4 table, as quantviz holds it (the reference kernels use the same 16 codes)."""
    from quantviz.core.quantizers.codebook import NF4_LEVELS

    return torch.tensor(NF4_LEVELS)


def nf4_plain(w: torch.Tensor, block: int = 64, argmin: bool = False) -> torch.Tensor:
    """bitsandbytes' NF4 blockwise quantize + dequantize in plain torch (1M-value chunks)."""
    code = _nf4_code()
    mids = (code[1:] + code[:-1]) * 0.5
    b = w.reshape(-1, block)
    absmax = b.abs().amax(1, keepdim=True)
    out = torch.empty_like(b)
    step = max(1, (1 << 20) // block)
    for r0 in range(0, b.shape[0], step):
        s = b[r0 : r0 + step] * (1.0 / absmax[r0 : r0 + step])
        if argmin:
            idx = torch.argmin((s.reshape(-1, 1) - code).abs(), dim=1).reshape(s.shape)
        else:
            idx = torch.bucketize(s, mids)
        out[r0 : r0 + step] = code[idx] * absmax[r0 : r0 + step]
    return out.reshape(w.shape)


def int4_g128_plain(w: torch.Tensor) -> torch.Tensor:
    g = w.reshape(-1, 128)
    amax = torch.maximum(-g.amin(1).clamp(max=0), g.amax(1).clamp(min=0))
    scale = torch.clamp(amax / 7.5, min=torch.finfo(torch.float32).eps)[:, None]
    return (torch.clamp(torch.round(g * (1.0 / scale)), -8, 7) * scale).reshape(w.shape)


def timeit(fn, repeat: int) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def layer_rows(repeat: int) -> None:
    from quantviz.core import QuantSpec, clear_cache, quantize

    torch.manual_seed(0)
    w = torch.randn(4096, 4096) * 0.02
    nf4 = QuantSpec(bits=4, quantizer="nf4", granularity="per_group", group_size=64)
    i4 = QuantSpec(bits=4, granularity="per_group", group_size=128)
    km = QuantSpec(bits=4, quantizer="kmeans")
    kmc = QuantSpec(bits=4, quantizer="kmeans", granularity="per_channel")
    mse = QuantSpec(bits=4, calibration="mse")
    default = torch.get_num_threads()
    print(f"per layer: 4096x4096 float32 (16.8M values), load {os.getloadavg()[0]:.1f}")
    print(f"{'threads':>7} {'row':<34} {'quantviz s':>10} {'ref s':>8} {'ratio':>6}  identical")
    for th in sorted({1, default}):
        torch.set_num_threads(th)
        rows = [
            ("NF4 g64 vs bnb (bucketize)", nf4, lambda: nf4_plain(w)),
            ("NF4 g64 vs bnb (argmin)", nf4, lambda: nf4_plain(w, argmin=True)),
            ("int4 g128 vs amax/round/clamp/mul", i4, lambda: int4_g128_plain(w)),
            ("int4 g128 + metrics vs plain", i4, lambda: int4_g128_plain(w)),
        ]
        for name, spec, ref in rows:
            metrics = "metrics" in name

            def ours(spec=spec, metrics=metrics):
                r = quantize(w, spec)
                return (r, r.sqnr_db) if metrics else (r, None)

            t_q = timeit(ours, repeat)
            t_r = timeit(ref, 1 if "argmin" in name else repeat)
            same = torch.equal(ours()[0].dequantized, ref())
            print(f"{th:>7} {name:<34} {t_q:10.3f} {t_r:8.3f} {t_q / t_r:6.2f}  {same}")
        t_q = timeit(lambda: quantize(w, i4, metrics=False), repeat)
        t_m = timeit(lambda: quantize(w, i4).sqnr_db, repeat)
        t_r = timeit(lambda: _sqnr_plain(w, int4_g128_plain(w)), repeat)
        print(
            f"{th:>7} {'int4 g128: SQNR cost over quantize':<34} {t_m:10.3f} {t_q:8.3f} "
            f"{t_m / t_q:6.2f}  (plain quantize + SQNR {t_r:.3f} s: ratio {t_m / t_r:.2f})"
        )
        for name, spec in (
            ("k-means 16 levels (target <= 1 s)", km),
            ("k-means 16 levels per channel", kmc),
            ("uniform 4b mse cal", mse),
        ):

            def fresh(spec=spec):
                clear_cache()
                return quantize(w, spec).sqnr_db

            t = timeit(fresh, max(1, repeat // 2))
            print(f"{th:>7} {name:<34} {t:10.3f} {'':>8} {'':>6}")
    torch.set_num_threads(default)
    embedding_rows(repeat)


def _sqnr_plain(x: torch.Tensor, y: torch.Tensor) -> float:
    a, b = x.double(), y.double()
    return float(10 * torch.log10((a * a).sum() / ((a - b) ** 2).sum()))


def embedding_rows(repeat: int) -> None:
    """The TinyLlama embedding's shape in bfloat16 (65.5M values): histogram and W4 g128
    quantize + SQNR against plain torch (float32 copy + ``histc``; the plain int4 g128
    expression + SQNR in float64)."""
    from quantviz.core import QuantSpec, quantize
    from quantviz.core.metrics import histogram

    torch.manual_seed(0)
    w = (torch.randn(32000, 2048) * 0.02).to(torch.bfloat16)
    i4 = QuantSpec(bits=4, granularity="per_group", group_size=128)
    default = torch.get_num_threads()

    def hist_ref() -> torch.Tensor:
        f = w.float()
        mn, mx = torch.aminmax(f)
        return torch.histc(f, 256, float(mn), float(mx))

    def q_ref() -> float:
        f = w.float()
        return _sqnr_plain(w, int4_g128_plain(f).to(torch.bfloat16))

    print(f"\nper layer: 32000x2048 bfloat16 (65.5M values), load {os.getloadavg()[0]:.1f}")
    print(f"{'threads':>7} {'row':<34} {'quantviz s':>10} {'ref s':>8} {'ratio':>6}")
    for th in sorted({1, default}):
        torch.set_num_threads(th)
        for name, ours, ref in (
            ("histogram 256 bins vs histc", lambda: histogram(w, 256), hist_ref),
            ("int4 g128 + SQNR vs plain", lambda: quantize(w, i4).sqnr_db, q_ref),
        ):
            t_q, t_r = timeit(ours, repeat), timeit(ref, repeat)
            print(f"{th:>7} {name:<34} {t_q:10.3f} {t_r:8.3f} {t_q / t_r:6.2f}")
    torch.set_num_threads(default)


# ---------------------------------------------------------------------------------------
# whole models (each stage in its own process)
# ---------------------------------------------------------------------------------------
def _config(model: str):
    import transformers as tf

    if model == "gpt2":
        return tf.GPT2Config(), tf.GPT2LMHeadModel, torch.float32
    if model == "llamasmall":  # GPT-2 124M's size in Llama's shape (what the transforms rotate)
        cfg = tf.LlamaConfig(
            hidden_size=1024,
            num_hidden_layers=6,
            intermediate_size=2816,
            num_attention_heads=16,
            num_key_value_heads=16,
            vocab_size=32000,
            max_position_embeddings=2048,
        )
        return cfg, tf.LlamaForCausalLM, torch.float32
    if model == "llama3b":  # OpenLLaMA 3B's shape: 3.4B parameters, 6.9 GB in bf16
        cfg = tf.LlamaConfig(
            hidden_size=3200,
            num_hidden_layers=26,
            intermediate_size=8640,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=32000,
            max_position_embeddings=2048,
        )
        return cfg, tf.LlamaForCausalLM, torch.bfloat16
    cfg = tf.LlamaConfig(
        hidden_size=2048,
        num_hidden_layers=22,
        intermediate_size=5632,
        num_attention_heads=32,
        num_key_value_heads=4,
        vocab_size=32000,
        max_position_embeddings=2048,
    )
    return cfg, tf.LlamaForCausalLM, torch.bfloat16


def stage_build(model: str, path: str) -> dict:
    if (Path(path) / "config.json").is_file():  # a kept checkpoint from an earlier run
        import safetensors

        n = 0
        for f in Path(path).glob("*.safetensors"):
            with safetensors.safe_open(str(f), "pt") as sf:
                for k in sf.keys():  # noqa: SIM118 - safe_open has no __iter__
                    n += _numel(sf, k)
        ckpt = sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))
        return {"params": n, "ckpt_bytes": ckpt}
    cfg, cls, dtype = _config(model)
    torch.manual_seed(0)
    torch.set_default_dtype(dtype)  # initialise in the checkpoint's dtype: half the memory
    m = cls(cfg)
    torch.set_default_dtype(torch.float32)
    m.save_pretrained(path, safe_serialization=True)
    n = sum(p.numel() for p in m.parameters())
    ckpt = sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))
    return {"params": n, "ckpt_bytes": ckpt}


def _numel(sf, key: str) -> int:
    n = 1
    for d in sf.get_slice(key).get_shape():
        n *= int(d)
    return n


def _tokens(vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, vocab, (4, 128), generator=g)


def _ce(logits: torch.Tensor, ids: torch.Tensor) -> float:
    lg = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    return float(torch.nn.functional.cross_entropy(lg, ids[:, 1:].reshape(-1)))


def stage_reference(model: str, path: str) -> dict:
    os.environ["HF_HUB_OFFLINE"] = "1"  # as quantviz opens it: no network look-ups
    import transformers as tf

    _, cls, _ = _config(model)
    reset_peak()
    t0 = time.perf_counter()
    m = cls.from_pretrained(path, dtype="auto", local_files_only=True).eval()
    t_load = time.perf_counter() - t0
    ids = _tokens(m.config.vocab_size)[:1]
    with torch.no_grad():
        m(ids)
    t = time.perf_counter() - t0
    del tf
    return {"ref_open_s": t, "ref_load_s": t_load, "ref_peak": peak()}


PARTS = (
    "open",
    "sqnr",
    "view",
    "gui",
    "w4",
    "w4s",
    "eval",
    "eval1",
    "evalup",
    "had",
    "smooth",
    "debug",
    "debug1",
    "debugup",
    "osqnr",
)
#: what each ``quantviz.eval.evaluate`` part does: (batch size, weight-cache bytes, transform)
EVAL_PARTS = {
    "eval": (256, None, None),  # as the CLI / GUI run it (default cache: 1 GiB)
    "eval1": (1, None, None),  # one sequence per batch: 4 batches
    "evalup": (256, 1 << 62, None),  # a cache that holds everything: every weight up front
    "had": (256, None, "hadamard"),
    "smooth": (256, None, "smoothquant"),
}
#: what each ``quantviz.eval.debug`` part does: (batch size, weight-cache bytes)
DEBUG_PARTS = {
    "debug": (256, None),  # as the CLI / GUI run it (default cache: 1 GiB)
    "debug1": (1, None),  # one sequence per batch: 4 batches, each quantizes every weight again
    "debugup": (256, 1 << 62),  # a cache that holds everything: every weight up front
}


def stage_quantviz(model: str, path: str, part: str) -> dict:
    """Open the checkpoint with quantviz and do one ``part``; peaks are the process's own
    (VmHWM since start: the open plus the part), so no stage inherits another's garbage."""
    import transformers  # noqa: F401 - imported before the clock, as the reference does

    from quantviz.app.metrics import compute_sqnr
    from quantviz.core import LayerConfig, ModelConfig, QuantSpec
    from quantviz.core.layer_view import LayerViewCache, layer_view
    from quantviz.eval import WeightCache, apply_config
    from quantviz.model import load_model

    out: dict = {}
    t0 = time.perf_counter()
    h = load_model(path)
    out["open_s"] = time.perf_counter() - t0
    out["layers"] = len(h.layers)
    out["open_peak"] = peak()
    w4 = QuantSpec(bits=4, granularity="per_group", group_size=128)
    w8 = QuantSpec(bits=8, granularity="per_group", group_size=128)
    weights = {f: h.quant_weight(f) for f in h.fqns}
    if part == "sqnr":
        t0 = time.perf_counter()
        sq = list(compute_sqnr(weights, [(f, w4) for f in h.fqns]))
        out["sqnr_s"] = time.perf_counter() - t0
        out["sqnr_min_db"] = min(s for _, _, s in sq)
    elif part == "view":
        big = max(h.fqns, key=lambda f: h.layer(f).weight_numel)
        out["big_layer"] = big
        out["big_numel"] = h.layer(big).weight_numel
        cache = LayerViewCache()
        torch.set_num_threads(1)  # as the GUI's worker computes it
        for key, spec in (("select_big", w8), ("bits_change", w4)):
            t0, c0 = time.perf_counter(), time.thread_time()
            layer_view(big, weights[big], spec, None, 0, cache)
            out[key + "_s"] = time.perf_counter() - t0
            out[key + "_cpu_s"] = time.thread_time() - c0  # this thread's CPU: load-proof
    elif part == "gui":
        out.update(_gui_view(h, w8, w4))
    elif part in ("w4", "w4s"):
        ids = _tokens(int(h.meta.get("vocab_size") or 32000))
        mod = h.module
        cfg = ModelConfig(default=LayerConfig(weight=w4))
        with torch.no_grad():
            mod(ids[:1, :8])  # warm-up
            t0 = time.perf_counter()
            out["ce_float"] = _ce(mod(ids).logits, ids)
            out["float_fwd_s"] = time.perf_counter() - t0
            kw = {"cache": WeightCache(max_bytes=0), "stream": True} if part == "w4s" else {}
            t0 = time.perf_counter()
            with apply_config(h, cfg, **kw):  # type: ignore[arg-type]
                out["ce_w4"] = _ce(mod(ids).logits, ids)
            out["w4_fwd_s"] = time.perf_counter() - t0
    elif part in EVAL_PARTS:
        out.update(_eval_part(h, part))
    elif part in DEBUG_PARTS:
        out.update(_debug_part(h, part))
    elif part == "osqnr":
        out.update(_osqnr_part(h, w4))
    out["peak"] = peak()
    return out


def _gui_view(h, w8, w4) -> dict:
    """The real histogram view (offscreen): select the largest layer at W8 g128, then bits
    8 -> 4; time to the repainted plot and the longest GUI-thread stall meanwhile (a 5 ms
    timer probe, as bench_gui does)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_gui import StallProbe, wait_signal
    from PySide6.QtWidgets import QApplication

    from quantviz.app import AppController
    from quantviz.gui.histogram_view import HistogramView
    from quantviz.session import Session

    app = QApplication.instance() or QApplication([])
    s = Session()
    ctl = AppController(s)
    hv = HistogramView(ctl)
    hv.resize(1000, 700)
    hv.show()
    s.set_model(h)
    big = max(h.fqns, key=lambda f: h.layer(f).weight_numel)
    s.set_layer_spec([big], "weight", w8)
    app.processEvents()
    out: dict = {}
    probe = StallProbe()
    for key, act, levels in (
        ("gui_select", lambda: s.select([big]), 256),
        ("gui_bits", lambda: s.set_layer_spec([big], "weight", w4), 16),
    ):
        probe.start()
        t0 = time.perf_counter()
        act()
        wait_signal(hv.updated, 600)
        hv.plot.repaint()
        out[key + "_s"] = time.perf_counter() - t0
        out[key + "_stall_ms"] = 1000 * probe.stop()
        assert hv.level_count() == levels, (hv.level_count(), levels)
    # the GUI thread's own share: drawing the computed data (the rest of a stall is the
    # OS scheduling the thread late on a loaded machine)
    paint = []
    for _ in range(5):
        t0 = time.perf_counter()
        hv._show(hv.data)  # type: ignore[arg-type]
        hv.plot.repaint()
        paint.append(time.perf_counter() - t0)
    out["gui_paint_ms"] = 1000 * statistics.median(paint)
    hv.runner.shutdown()
    hv.close()
    return out


def _eval_part(h, part: str) -> dict:
    """``quantviz.eval.evaluate`` W4 g128 perplexity on 4 x 128 tokens against the float
    evaluation (``compute_baseline``) of the same tokens, as the CLI and the GUI run it."""
    from quantviz.core import LayerConfig, ModelConfig, QuantSpec
    from quantviz.data.types import EvalData
    from quantviz.eval import WeightCache, compute_baseline, evaluate, run
    from quantviz.eval.apply import quantized_bytes, stream_refusal

    bs, cache_bytes, transform = EVAL_PARTS[part]
    ids = _tokens(int(h.meta.get("vocab_size") or 32000))
    data = EvalData("tokens", ids, None, ids[:2], task="causal_lm")
    cfg = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=4, granularity="per_group", group_size=128))
    )
    g64 = LayerConfig(weight=QuantSpec(bits=4, granularity="per_group", group_size=64))
    odd = [lay.fqn for lay in h.layers if lay.weight_shape[-1] % 128]
    for fqn in odd:  # OpenLLaMA 3B's down_proj rows are 8640 long: groups of 64 there
        cfg = cfg.with_override(fqn, g64)
    if transform:
        cfg = cfg.with_transforms([transform])
    cache = WeightCache() if cache_bytes is None else WeightCache(max_bytes=cache_bytes)
    with torch.no_grad():
        h.module(ids[:1, :8])  # warm-up
    base = run(compute_baseline(h, data, batch_size=bs))
    out = {"float_eval_s": base.seconds, "base_peak": peak(), "ppl_float": base.value}
    t0 = time.perf_counter()
    r = run(evaluate(h, data, cfg, cache=cache, baseline=base, batch_size=bs))
    out["eval_s"] = time.perf_counter() - t0
    out["ppl_w4"] = r.value
    out["timings"] = {k: v for k, v in r.timings.items() if v > 0.005}
    out["streamed"] = stream_refusal(h, cfg) is None and quantized_bytes(h, cfg) > cache.max_bytes
    out["batches"] = -(-4 // r.batch_size)
    out["g64_layers"] = len(odd)
    return out


def _debug_part(h, part: str) -> dict:
    """``quantviz.eval.debug`` (error propagation: per layer the isolated and the cumulative
    error) of W4 g128 on the 4 x 128 tokens, vs one float forward of the same tokens."""
    from quantviz.core import LayerConfig, ModelConfig, QuantSpec
    from quantviz.data.types import EvalData
    from quantviz.eval import WeightCache, run
    from quantviz.eval.apply import streams
    from quantviz.eval.debug import debug

    bs, cache_bytes = DEBUG_PARTS[part]
    ids = _tokens(int(h.meta.get("vocab_size") or 32000))
    data = EvalData("tokens", ids, None, ids[:2], task="causal_lm")
    cfg = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=4, granularity="per_group", group_size=128))
    )
    g64 = LayerConfig(weight=QuantSpec(bits=4, granularity="per_group", group_size=64))
    for fqn in [lay.fqn for lay in h.layers if lay.weight_shape[-1] % 128]:
        cfg = cfg.with_override(fqn, g64)
    cache = WeightCache() if cache_bytes is None else WeightCache(max_bytes=cache_bytes)
    with torch.no_grad():
        h.module(ids[:1, :8])  # warm-up
        t0 = time.perf_counter()
        h.module(ids)
        out = {"float_fwd_s": time.perf_counter() - t0, "base_peak": peak()}
    t0 = time.perf_counter()
    r = run(debug(h, data, cfg, cache=cache, batch_size=bs))
    out["debug_s"] = time.perf_counter() - t0
    out["output_sqnr_db"] = r.output.sqnr_db
    out["kl"] = r.output.kl
    out["min_cum_sqnr_db"] = min(lay.cumulative.sqnr_db for lay in r.layers)
    out["n_layers"] = len(r.layers)
    out["flagged"] = len(r.flagged)
    out["streamed"] = streams(h, cfg, cache)  # the policy (before it, debug never streamed)
    return out


def _osqnr_part(h, w4) -> dict:
    """The ``output_sqnr`` proxy of every layer at W4 g128 on the 4 x 128 tokens."""
    from quantviz.data.types import EvalData
    from quantviz.eval import run
    from quantviz.eval.proxies import output_sqnr

    ids = _tokens(int(h.meta.get("vocab_size") or 32000))
    data = EvalData("tokens", ids, None, ids[:2], task="causal_lm")
    g64 = w4.with_(group_size=64)
    cands = [(lay.fqn, g64 if lay.weight_shape[-1] % 128 else w4) for lay in h.layers]
    t0 = time.perf_counter()
    r = run(output_sqnr(h, data, cands, batch_size=256))
    return {"osqnr_s": time.perf_counter() - t0, "worst": max(r, key=lambda k: r[k])[0]}


#: --max-rss: a stage whose process passes this many bytes of RSS is stopped (0: no cap)
MAX_RSS = 0


def _child_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _run_stage(stage: str, model: str, path: str) -> dict:
    """Run one stage in a fresh process; its JSON, or ``{"failed": why}`` (an error, or
    stopped at the ``--max-rss`` cap, so a large model cannot take the machine down)."""
    cmd = [sys.executable, __file__, "--stage", stage, "--models", model, "--keep", path]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        top = 0
        while proc.poll() is None:
            top = max(top, _child_rss(proc.pid))
            if MAX_RSS and top > MAX_RSS:
                proc.kill()
                proc.wait()
                return {"failed": f"stopped at {top / GB:.1f} GB RSS (cap {MAX_RSS / GB:.1f} GB)"}
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1:] or ["?"]
        return {"failed": f"exit {proc.returncode}: {tail[0][:300]}"}
    return json.loads(stdout.strip().splitlines()[-1])


def model_rows(model: str, keep: str | None, parts: tuple[str, ...] = PARTS) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(keep or tmp) / model)
        t0 = time.perf_counter()
        b = _run_stage("build", model, path)
        if "failed" in b:
            print(f"\n{model}: build {b['failed']}", flush=True)
            return
        print(
            f"\n{model}: {b['params'] / 1e6:.0f}M parameters, checkpoint "
            f"{b['ckpt_bytes'] / GB:.2f} GB (built in {time.perf_counter() - t0:.0f} s), "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        r = _run_stage("reference", model, path) if "open" in parts else {"ref_open_s": 0}
        ck = b["ckpt_bytes"]
        if "failed" in r:
            print(f"  from_pretrained + 1 forward    {r['failed']}", flush=True)
        elif "ref_peak" in r:
            print(
                f"  from_pretrained + 1 forward    {r['ref_open_s']:8.1f} s   peak "
                f"{r['ref_peak'] / GB:5.2f} GB ({r['ref_peak'] / ck:.2f}x ckpt)",
                flush=True,
            )
        q = {}
        for p in parts:
            q[p] = _run_stage("quantviz:" + p, model, path)
            if "failed" in q[p]:
                print(f"  {p}: {q.pop(p)['failed']}", flush=True)

        def pk(p: str) -> str:
            v = q[p]["peak"]
            return f"peak {v / GB:5.2f} GB ({v / ck:.2f}x ckpt)"

        if "open" in q:
            o = q["open"]
            print(
                f"  open -> {o['layers']} layers found      {o['open_s']:8.1f} s   "
                f"{o['open_s'] / r['ref_open_s']:.2f}x ref   {pk('open')}"
            )
        if "sqnr" in q:
            print(f"  SQNR of every layer, W4 g128   {q['sqnr']['sqnr_s']:8.1f} s   {pk('sqnr')}")
        if "view" in q:
            v = q["view"]
            print(
                f"  select {v['big_layer']} ({v['big_numel'] / 1e6:.1f}M) "
                f"{v['select_big_s']:6.2f} s   bits 8 -> 4 g128: {v['bits_change_s']:.2f} s   "
                f"(1 thread; CPU {v['select_big_cpu_s']:.2f} / {v['bits_change_cpu_s']:.2f} s)   "
                f"{pk('view')}"
            )
        if "gui" in q:
            g = q["gui"]
            print(
                f"  GUI: select {g['gui_select_s']:.2f} s (stall {g['gui_select_stall_ms']:.0f} ms)"
                f"   bits 8 -> 4 g128: {g['gui_bits_s']:.2f} s "
                f"(stall {g['gui_bits_stall_ms']:.0f} ms)"
                f"   GUI-thread drawing {g['gui_paint_ms']:.0f} ms   {pk('gui')}"
            )
        for p, name in (("w4", "W4 g128 forward (incl. quant.)"), ("w4s", "same, stream=True")):
            if p not in q:
                continue
            w = q[p]
            print(
                f"  {name:<30} {w['w4_fwd_s']:8.2f} s   {w['w4_fwd_s'] / w['float_fwd_s']:.2f}x "
                f"float ({w['float_fwd_s']:.2f} s)   CE {w['ce_w4']:.4f} (float "
                f"{w['ce_float']:.4f})   {pk(p)}",
                flush=True,
            )
        names = {
            "eval": "evaluate W4 g128 ppl, 4x128",
            "eval1": "same, batch 1 (4 batches)",
            "evalup": "same, every weight up front",
            "had": "evaluate + hadamard",
            "smooth": "evaluate + smoothquant",
        }
        for p, name in (
            ("debug", "debug W4 g128, 4x128"),
            ("debug1", "same, batch 1 (4 batches)"),
            ("debugup", "same, every weight up front"),
        ):
            if p not in q:
                continue
            e = q[p]
            how = "streamed" if e["streamed"] else "up front"
            print(
                f"  {name:<30} {e['debug_s']:8.2f} s   {e['debug_s'] / e['float_fwd_s']:.1f}x "
                f"float forward ({e['float_fwd_s']:.2f} s; {how})"
                f"   {e['n_layers']} layers, output SQNR {e['output_sqnr_db']:.2f} dB, KL "
                f"{e['kl']:.4f}, {e['flagged']} flagged   {pk(p)} "
                f"(float forward {e['base_peak'] / ck:.2f}x)",
                flush=True,
            )
        if "osqnr" in q:
            o = q["osqnr"]
            print(
                f"  output_sqnr proxy, every layer W4 g128  {o['osqnr_s']:8.2f} s   "
                f"worst {o['worst']}   {pk('osqnr')}",
                flush=True,
            )
        for p, name in names.items():
            if p not in q:
                continue
            e = q[p]
            how = "streamed" if e["streamed"] else "up front"
            tim = ", ".join(f"{k} {v:.1f}" for k, v in e["timings"].items())
            print(
                f"  {name:<30} {e['eval_s']:8.2f} s   {e['eval_s'] / e['float_eval_s']:.2f}x "
                f"float eval ({e['float_eval_s']:.2f} s, {e['batches']} batches, {how})   "
                f"ppl {e['ppl_w4']:.1f} (float {e['ppl_float']:.1f})   {pk(p)} "
                f"(float eval {e['base_peak'] / ck:.2f}x)   [{tim}]",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="gpt2,tinyllama")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-layers", action="store_true")
    ap.add_argument(
        "--keep", default=None, help="folder to keep the checkpoints in (reused when present)"
    )
    ap.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"whole-model stages (of {','.join(PARTS)}; had/smooth: gpt2, llamasmall only)",
    )
    ap.add_argument(
        "--max-rss",
        type=float,
        default=0.0,
        help="GB: stop a stage whose process passes this resident size (0: no cap)",
    )
    ap.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        if args.stage.startswith("quantviz:"):
            res = stage_quantviz(args.models, args.keep, args.stage.partition(":")[2])
        else:
            fn = {"build": stage_build, "reference": stage_reference}
            res = fn[args.stage](args.models, args.keep)
        print(json.dumps(res))
        return
    print(
        f"torch {torch.__version__}, default {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cores"
    )
    if not args.skip_layers:
        layer_rows(args.repeat)
    global MAX_RSS
    MAX_RSS = int(args.max_rss * GB)
    parts = tuple(p for p in args.parts.split(",") if p)
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise SystemExit(f"--parts: unknown {', '.join(bad)} (of {', '.join(PARTS)})")
    for m in filter(None, args.models.split(",")):
        small = m in ("gpt2", "llamasmall")
        mp = parts if small else tuple(p for p in parts if p not in ("had", "smooth"))
        model_rows(m, args.keep, mp)


if __name__ == "__main__":
    main()
