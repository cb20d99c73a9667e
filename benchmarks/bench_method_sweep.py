"""What a sweep per method costs (issue 13), as ratios (wall clock, best of ``--repeat``).

One per-method job (``AppController.methods_sweep_job``: one float baseline and the
calibration data shared by every method) vs the same methods as separate sweeps each
computing its own baseline, and each method's curve vs the nearest-rounding curve
(sample:digits_mobilenet, W3/W4 per tensor; the methods below).

    OMP_NUM_THREADS=1 python benchmarks/bench_method_sweep.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantviz.app import AppController, run_job
from quantviz.core.methods import parse_methods
from quantviz.core.spec import QuantSpec
from quantviz.eval import run
from quantviz.eval.method_sweep import methods_sweep

METHODS = "nearest,gptq,adaround,cle+bias_correction,smoothquant"


def best(fn, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default="sample:digits_mobilenet")
    args = ap.parse_args()
    ctl = AppController()
    run_job(ctl.open_model_job(args.model))
    h, data = ctl.session.handle, ctl.session.data
    spec = QuantSpec(bits=4, granularity="per_tensor")
    methods = parse_methods(METHODS)

    def one_job() -> None:
        run(methods_sweep(h, data, (3, 4), spec, methods))

    each: dict[str, float] = {}

    def separate() -> None:
        for m in methods:
            t0 = time.perf_counter()
            run(methods_sweep(h, data, (3, 4), spec, [m]))
            each[m.label] = min(each.get(m.label, 1e9), time.perf_counter() - t0)

    one_job()  # warm: transforms, calibration statistics, rounding
    t_one = best(one_job, args.repeat)
    t_sep = best(separate, args.repeat)
    print(f"{args.model}, W3/W4 per tensor, methods {METHODS}")
    print(
        f"one per-method job {t_one:.2f} s; separate sweeps {t_sep:.2f} s: "
        f"{t_sep / t_one:.2f}x the one job"
    )
    base = each["nearest"]
    for label, t in each.items():
        print(f"  {label:<22} {t:6.2f} s  {t / base:6.2f}x nearest")


if __name__ == "__main__":
    main()
