"""Calibration cost as a ratio to the forward pass, on an EfficientNet-Lite0-like model.

Times (wall clock, 1 thread, best of ``--repeat``) the plain forward pass over the
calibration batches and :class:`quantviz.model.capture.StatsCollector` over the same
batches, inputs only (what static quantization needs, as ``quantviz.eval.calibrate`` runs
it) and inputs + outputs. The collector's time includes its own forward pass, so a ratio of
1.3 means the statistics cost 0.3 of a forward pass.

    python benchmarks/bench_calibration.py [--size 64] [--images 64] [--batch 32]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantviz.model.capture import StatsCollector
from tests.models import efficientnet_lite, handle_of


def best(fn, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = efficientnet_lite(size=args.size)
    handle = handle_of(model, torch.zeros(1, 3, args.size, args.size))
    g = torch.Generator().manual_seed(1)
    calib = torch.randn(args.images, 3, args.size, args.size, generator=g)
    batches = [calib[i : i + args.batch] for i in range(0, args.images, args.batch)]

    def forward() -> None:
        with torch.no_grad():
            for b in batches:
                model(b)

    def collect(outputs: bool) -> None:
        for _ in StatsCollector(handle, outputs=outputs).run(batches):
            pass

    forward()
    tf = best(forward, args.repeat)
    ti = best(lambda: collect(False), args.repeat)
    to = best(lambda: collect(True), args.repeat)
    print(f"{len(handle.fqns)} layers, {args.images} images {args.size}x{args.size}")
    print(f"forward                 {tf:8.3f} s")
    print(f"calibration (inputs)    {ti:8.3f} s  ratio {ti / tf:5.2f}")
    print(f"calibration (in + out)  {to:8.3f} s  ratio {to / tf:5.2f}")


if __name__ == "__main__":
    main()
