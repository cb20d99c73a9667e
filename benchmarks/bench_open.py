"""Time to open a model: quantviz's time to a filled layer table as a ratio to the framework's
own load plus one forward pass (printed, not asserted). Target: <= ~1.2x.

quantviz's time is the app's open-model job (:func:`quantviz.model.load_model`, which reads
the checkpoint and runs one forward pass on the example input to discover the layers and
their MACs, then the session adopting the model): the layer table's rows. The table's SQNR
column (every weight quantized under the default configuration, in a worker while the app
is already usable) is printed apart. The reference is what a user of the framework pays
anyway to run the model once.

Hugging Face: a GPT-2-shaped model built from a config (random init) and saved with
``save_pretrained`` to a temporary folder; the reference is
``AutoModelForCausalLM.from_pretrained`` + one forward of the same 16 tokens. Sizes: 6
layers of n_embd 768 (~81M parameters) by default, the full 124M GPT-2 shape with
``--full``. Both sides run in one process with transformers imported first (its import,
~5 s here, is paid once by either), alternating, the median of ``--repeats`` runs.

    python benchmarks/bench_open.py [--full] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOKENS = 16


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def quantviz_open(source: str) -> tuple[float, float, int]:
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


def bench_huggingface(n_layer: int, n_embd: int, repeats: int) -> float:
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

        quantviz_open(str(folder))  # warm both (file cache, lazy imports)
        reference()
        ref_t: list[float] = []
        rows_t: list[float] = []
        sqnr_t: list[float] = []
        for _ in range(repeats):
            ref_t.append(_median_time(reference, 1))
            a, b, rows = quantviz_open(str(folder))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="also the full 124M GPT-2 shape")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import transformers  # noqa: F401  - imported once, outside both timings

    bench_huggingface(6, 768, args.repeats)
    if args.full:
        bench_huggingface(12, 768, args.repeats)


if __name__ == "__main__":
    main()
