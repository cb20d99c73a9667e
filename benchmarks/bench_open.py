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

    python benchmarks/bench_open.py [--kinds onnx] [--width 64] [--size 224] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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


KINDS: dict[str, Callable[[argparse.Namespace], dict[str, float]]] = {"onnx": bench_onnx}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: " + ", ".join(KINDS))
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for kind in args.kinds.split(","):
        KINDS[kind.strip()](args)


if __name__ == "__main__":
    main()
