"""Block formats vs integer groups: weight SQNR on Gaussian and heavy-tailed tensors.

MXFP4 (E2M1, E8M0 scale per 32), NVFP4 (E2M1, E4M3 scale per 16 + FP32 per tensor) against
4-bit symmetric integers with a float32 scale per group of 32 / 16 (and the 6/8-bit MX
formats for reference), on a ``--size`` x ``--size`` tensor of N(0, 1) and of Student-t(3)
values. Prints SQNR (dB), stored bits per value and the time of one quantization.

    python benchmarks/bench_block_formats.py [--size 4096]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantviz.core import QuantSpec, quantize

SCHEMES = {
    "mxfp4": QuantSpec(quantizer="mxfp4"),
    "nvfp4": QuantSpec(quantizer="nvfp4"),
    "int4 g32": QuantSpec(bits=4, granularity="per_group", group_size=32),
    "int4 g16": QuantSpec(bits=4, granularity="per_group", group_size=16),
    "mxfp6_e2m3": QuantSpec(quantizer="mxfp6_e2m3"),
    "mxfp6_e3m2": QuantSpec(quantizer="mxfp6_e3m2"),
    "mxfp8_e4m3": QuantSpec(quantizer="mxfp8_e4m3"),
    "mxint8": QuantSpec(quantizer="mxint8"),
    "int8 g32": QuantSpec(bits=8, granularity="per_group", group_size=32),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    n = args.size
    normal = torch.randn(n, n, generator=g)
    t3 = torch.distributions.StudentT(3.0).sample((n, n))
    print(f"{n}x{n} tensors, 1 thread")
    print(f"{'scheme':<12} {'bits/value':>10} {'N(0,1) dB':>10} {'t(3) dB':>9} {'time s':>7}")
    for name, spec in SCHEMES.items():
        t0 = time.perf_counter()
        a = quantize(normal, spec)
        dt = time.perf_counter() - t0
        b = quantize(t3, spec)
        print(
            f"{name:<12} {a.bits_per_value:>10.4f} {a.sqnr_db:>10.2f} {b.sqnr_db:>9.2f} {dt:>7.2f}"
        )


if __name__ == "__main__":
    main()
