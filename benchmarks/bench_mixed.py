"""Exact mixed precision: solver speed, front tracing, and exact vs greedy on the samples.

1. Solve time of the exact ILP (HiGHS via ``scipy.optimize.milp``) and of the greedy
   heuristic for 50 / 300 / 1000 layers x 12 schemes (synthetic but shaped like real
   tables: bytes = weights x bits per value / 8 for 12 schemes from 2 to 32 bits, cost =
   weights x 2^(-2 bits) x a log-normal per-layer sensitivity), median over 5 budgets; and
   the time to trace the Pareto front: exact by DP for 50 layers (its front already has
   ~10^5 points), sampled by 20 ILP solves above.
2. Exact vs greedy at three budgets on both digit samples with the ``kl`` proxy: the proxy
   objective (sum of per-layer KLs) and the measured metric (accuracy) and output KL of the
   chosen configuration.

    python benchmarks/bench_mixed.py [--skip-samples]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantviz.core.mckp import front, front_by_budgets, solve_exact, solve_greedy

BPV = [2.25, 3.0, 3.25, 4.0, 4.25, 4.5, 5.0, 6.25, 8.0, 8.25, 16.0, 32.0]  # 12 schemes


def synthetic(layers: int, seed: int = 0) -> list[list[tuple[float, float]]]:
    rng = np.random.default_rng(seed)
    n = rng.integers(1 << 10, 1 << 20, layers)
    sens = rng.lognormal(0.0, 1.5, layers)
    jitter = rng.uniform(0.7, 1.3, (layers, len(BPV)))
    out = []
    for i in range(layers):
        opts = []
        for j, b in enumerate(BPV):
            cost = 0.0 if b == 32.0 else float(n[i] * 2.0 ** (-2 * b) * sens[i] * jitter[i, j])
            opts.append((float(n[i] * b / 8), cost))
        out.append(opts)
    return out


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def solver_speed() -> None:
    print("solve time (median of 5 budgets between 3 and 6 bits per weight), 1 thread")
    print(
        f"{'layers':>6} {'exact ms':>9} {'greedy ms':>10} {'greedy/exact cost':>18} {'front':>22}"
    )
    for layers in (50, 300, 1000):
        opts = synthetic(layers)
        weights = sum(o[0][0] / (BPV[0] / 8) for o in opts)
        te, tg, ratio = [], [], []
        for bpw in np.linspace(3, 6, 5):
            budget = bpw * weights / 8
            t, e = timed(lambda b=budget: solve_exact(opts, b))
            te.append(t)
            t, g = timed(lambda b=budget: solve_greedy(opts, b))
            tg.append(t)
            ratio.append(g.cost / e.cost if e.cost > 0 else 1.0)
        if layers <= 50:
            t, f = timed(lambda: front(opts, max_points=1_000_000))
            fr = f"DP {len(f)} pts {t:.1f} s"
        else:
            t, f = timed(lambda: front_by_budgets(opts, 20))
            fr = f"20 ILPs {len(f)} pts {t:.1f} s"
        print(
            f"{layers:>6} {1e3 * statistics.median(te):>9.1f} {1e3 * statistics.median(tg):>10.1f} "
            f"{max(ratio):>18.4f} {fr:>22}"
        )


def samples(names: tuple[str, ...] = ("digits_cnn", "digits_mobilenet")) -> None:
    from quantviz.core.mixed_spec import Budget, parse_choices
    from quantviz.data import load_data
    from quantviz.eval import evaluate, run
    from quantviz.eval.mixed_exact import cost_table
    from quantviz.model import load_model

    choices = "int2:pc,int3:pc,int4:pc,int8:pc,nf4,fp8,mxfp4,nvfp4,float"
    print(f"\nexact vs greedy, proxy kl, choices {choices}")
    print(
        f"{'model':<18} {'budget':>7} {'solver':>6} {'KL proxy':>9} {'size kB':>8} "
        f"{'accuracy':>8} {'KL':>8}"
    )
    # digits_mobilenet's depthwise rows (9 values) cost at least ~3.1 bits per weight
    budgets = {"digits_cnn": (3.0, 4.0, 5.0), "digits_mobilenet": (3.5, 4.5, 6.0)}
    for name in names:
        h = load_model(f"sample:{name}")
        data = load_data(None, h)
        table = run(cost_table(h, data, parse_choices(choices), "kl"))
        for bpw in budgets[name]:
            budget = Budget("bpw", bpw, f"{bpw}bpw")
            for solver in ("exact", "greedy"):
                sol = table.solve(budget, solver)
                r = run(evaluate(h, data, sol.config))
                print(
                    f"{name:<18} {budget.text:>7} {solver:>6} {sol.objective:>9.4f} "
                    f"{sol.model_bytes / 1e3:>8.2f} {100 * r.value:>7.2f}% {r.kl:>8.4f}"
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-samples", action="store_true")
    ap.add_argument("--only-samples", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if not args.only_samples:
        solver_speed()
    if not args.skip_samples:
        samples()


if __name__ == "__main__":
    main()
