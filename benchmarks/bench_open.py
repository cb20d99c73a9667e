"""Opening a model: quantviz's time to a filled layer table vs the framework's own load.

One function per model kind; ``main`` runs them and prints the ratios (wall clock, best of
``--repeat``, the threads of ``OMP_NUM_THREADS``).

* ``onnx``: a ResNet-18 (torchvision's layout, random weights, BatchNorm folded as
  ``torch.onnx.export`` writes it; ``--width 64`` is the real 11.7M-parameter network) at
  ``--size`` x ``--size`` inputs. quantviz: ``load_model`` (graph read, layers found, the
  onnxruntime module built) and then what the layer table shows — every layer's weight SQNR
  under the default W8 per-channel configuration — plus one forward pass (the first
  evaluation builds the onnxruntime session). Baseline: ``onnx.load`` + an
  ``InferenceSession`` + one run of the same file. Then the steady-state forward pass of a
  batch of 8 against a plain session of the file (quantviz feeds the weights as inputs).

* ``huggingface``: a GPT-2-shaped checkpoint built from a config (random init, 6 layers of
  n_embd 768, ~82M parameters; the full 124M shape with ``--full``) saved with
  ``save_pretrained`` to a temporary folder. quantviz: the app's open-model job
  (``load_model`` — the checkpoint read, one forward pass on 16 tokens to find the layers
  and their MACs — and the session adopting the model): the layer table's rows; then its
  SQNR column (every weight under the default W8 per-channel configuration, computed in a
  worker while the app is usable), printed apart. Baseline:
  ``AutoModelForCausalLM.from_pretrained`` + one forward of the same 16 tokens.
  transformers is imported before either is timed; median of ``--repeat`` alternating runs.

    python benchmarks/bench_open.py [--kinds onnx,huggingface] [--width 64] [--size 224]
        [--repeat 3] [--full]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


TOKENS = 16


def best(fn: Callable[[], object], repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def bench_onnx(args: argparse.Namespace) -> dict[str, float]:
    import onnx
    import onnxruntime as ort

    from quantviz.core import quantize
    from quantviz.core.defaults import DEFAULT_CONFIG
    from quantviz.model import load_model
    from tests.models import resnet18

    net = resnet18(width=args.width, num_classes=1000)
    x = torch.randn(1, 3, args.size, args.size)
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "resnet18.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x,),
            str(path),
            dynamo=False,
            input_names=["input"],
            dynamic_axes={"input": {0: "batch"}},
        )
    xa = x.numpy()

    opts = ort.SessionOptions()  # the threads quantviz's session uses (OMP_NUM_THREADS)
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit():
        opts.intra_op_num_threads = int(threads)

    def baseline() -> None:
        model = onnx.load(str(path))
        sess = ort.InferenceSession(
            model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        sess.run(None, {"input": xa})

    def quantviz_open() -> None:
        load_model(str(path))

    def quantviz_table() -> None:
        h = load_model(str(path))
        for lay in h.layers:
            spec = DEFAULT_CONFIG.resolve(lay.fqn).weight
            assert spec is not None
            quantize(h.weight(lay.fqn), spec)
        h.module(x)

    base = best(baseline, args.repeat)
    opened = best(quantviz_open, args.repeat)
    table = best(quantviz_table, args.repeat)
    h = load_model(str(path))
    n = sum(np.prod(lay.weight_shape) for lay in h.layers)
    print(
        f"onnx  ResNet-18 width {args.width}, {args.size}x{args.size}: {len(h.layers)} layers, "
        f"{n / 1e6:.2f}M quantizable weights, {path.stat().st_size / 1e6:.1f} MB"
    )
    print(f"  onnx.load + InferenceSession + 1 run   {base * 1e3:8.1f} ms")
    print(
        f"  quantviz load_model (layers found)     {opened * 1e3:8.1f} ms  ({opened / base:.2f}x)"
    )
    print(f"  + W8 SQNR of every layer + 1 forward   {table * 1e3:8.1f} ms  ({table / base:.2f}x)")
    # steady state: a forward pass of a batch of 8 (weights fed as inputs) vs plain onnxruntime
    xb = torch.randn(8, 3, args.size, args.size)
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    h.module(xb)
    fwd = best(lambda: h.module(xb), args.repeat)
    plain = best(lambda: sess.run(None, {"input": xb.numpy()}), args.repeat)
    print(f"  forward, batch 8: plain onnxruntime     {plain * 1e3:8.1f} ms")
    print(f"  forward, batch 8: quantviz module      {fwd * 1e3:8.1f} ms  ({fwd / plain:.2f}x)")
    return {"onnx_base": base, "onnx_open": opened, "onnx_table": table, "onnx_forward": fwd}


def hf_open(source: str) -> tuple[float, float, int]:
    """quantviz's open: seconds to the layer table's rows (load, layer discovery, the
    session adopting the model), then to its SQNR column (weight SQNR of every layer under
    the default W8 per-channel configuration, computed in a worker in the app); rows."""
    from quantviz.app import AppController, run_job
    from quantviz.app.metrics import compute_sqnr

    t0 = time.perf_counter()
    ctl = AppController()
    opened = run_job(ctl.open_model_job(source))
    t1 = time.perf_counter()
    s = ctl.session
    todo = ctl.sqnr.missing(s.fqns, [s.config])
    ctl.sqnr.record(compute_sqnr(s.weights, todo))
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, len(opened.handle.layers)


def _bench_gpt2(n_layer: int, n_embd: int, repeats: int) -> float:
    """GPT-2-shaped checkpoint: ratio of quantviz's open to from_pretrained + one forward."""
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_embd // 64)
    model = tf.GPT2LMHeadModel(cfg).eval()
    n_params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "gpt2"
        model.save_pretrained(str(folder))
        del model
        x = torch.arange(TOKENS)[None]

        def reference() -> None:
            m = tf.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
            m.eval()
            with torch.no_grad():
                m(x)

        hf_open(str(folder))  # warm both (file cache, lazy imports)
        reference()
        ref_t: list[float] = []
        rows_t: list[float] = []
        sqnr_t: list[float] = []
        for _ in range(repeats):
            ref_t.append(best(reference, 1))
            a, b, rows = hf_open(str(folder))
            rows_t.append(a)
            sqnr_t.append(b)
    ref, ours, sq = (statistics.median(v) for v in (ref_t, rows_t, sqnr_t))
    ratio = ours / ref
    print(
        f"huggingface gpt2 n_layer={n_layer} n_embd={n_embd} ({n_params / 1e6:.0f}M params, "
        f"{rows} layers): from_pretrained + forward {ref:.2f} s; quantviz to the layer "
        f"table's rows {ours:.2f} s: ratio {ratio:.2f}x; its SQNR column (W8 per-channel "
        f"of every weight, in a worker) {sq:.2f} s more: {(ours + sq) / ref:.2f}x in all"
    )
    return ratio


def bench_huggingface(args: argparse.Namespace) -> dict[str, float]:
    import transformers  # noqa: F401  - imported once, outside both timings

    out = {"hf_ratio": _bench_gpt2(6, 768, args.repeat)}
    if args.full:
        out["hf_ratio_124m"] = _bench_gpt2(12, 768, args.repeat)
    return out


KINDS: dict[str, Callable[[argparse.Namespace], dict[str, float]]] = {
    "onnx": bench_onnx,
    "huggingface": bench_huggingface,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: " + ", ".join(KINDS))
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="huggingface: also the 124M GPT-2 shape")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for kind in args.kinds.split(","):
        KINDS[kind.strip()](args)


if __name__ == "__main__":
    main()
