"""Cost of the error-propagation debugger and of each sensitivity proxy (printed, not asserted).

For each bundled sample (digits test split, 360 images) at W4 per-tensor and W3 per-channel:

- ``debug`` (one float + one quantized pass with hooks) vs one plain evaluation of the same
  configuration (which also runs the float baseline once): the debugger's overhead;
- each proxy's wall time (``measure`` = the truth, one evaluation per layer; ``kl`` reuses it)
  and its Spearman rho vs the measured single-layer drop;
- the Hessian trace: time per layer per probe vs one forward + backward pass of the loss over
  the same samples (128): a Hutchinson probe is one Hessian-vector product (double
  back-propagation), so ``probes x HVP / layers`` is the time per layer.

    python benchmarks/bench_proxies.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.data import load_data
from quantviz.eval import compute_baseline, evaluate, run
from quantviz.eval.debug import debug
from quantviz.eval.proxies import hutchinson_traces, rank_proxies
from quantviz.model import load_model

PROBES = 32
SAMPLES = 128


def _best(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def backward_time(h, d) -> float:
    """One forward + backward of the cross-entropy over SAMPLES samples (all weights)."""
    params = [h.weight(f) for f in h.fqns]
    x, y = d.x[:SAMPLES], d.y[:SAMPLES]

    def once() -> None:
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            loss = torch.nn.functional.cross_entropy(h.module(x), y)
            torch.autograd.grad(loss, params)
        for p in params:
            p.requires_grad_(False)

    return _best(once)


def main() -> None:
    torch.set_num_threads(1)
    for name in ("sample:digits_cnn", "sample:digits_mobilenet"):
        h = load_model(name)
        d = load_data(None, h)
        base = run(compute_baseline(h, d))
        print(f"\n== {name}: {len(h.fqns)} layers, {len(d)} samples")
        for spec in (QuantSpec(bits=4), QuantSpec(bits=3, granularity="per_channel")):
            cfg = ModelConfig(default=LayerConfig(weight=spec))
            t_eval = _best(lambda cfg=cfg: run(evaluate(h, d, cfg)))
            t_dbg = _best(lambda cfg=cfg: run(debug(h, d, cfg)))
            res = run(debug(h, d, cfg))
            print(
                f"W{spec.short()}: debug {t_dbg * 1e3:.0f} ms vs evaluate {t_eval * 1e3:.0f} ms "
                f"({t_dbg / t_eval:.2f}x); flagged {', '.join(res.flagged) or 'none'}"
            )
            print(
                "   "
                + "  ".join(
                    f"{lay.fqn} {lay.isolated.sqnr_db:.1f}/{lay.cumulative.sqnr_db:.1f}"
                    for lay in res.layers
                )
                + "   (isolated/cumulative SQNR dB)"
            )
            rep = run(rank_proxies(h, d, [(f, spec) for f in h.fqns], baseline=base))
            print(
                "   spearman: "
                + ", ".join(f"{p} {v:+.2f}" for p, v in rep.spearman.items())
                + "   seconds: "
                + ", ".join(f"{k} {v:.2f}" for k, v in rep.seconds.items())
            )
        t_bwd = backward_time(h, d)
        t_tr = _best(
            lambda: run(hutchinson_traces(h, d, probes=PROBES, max_samples=SAMPLES)), repeats=1
        )
        per_layer_probe = t_tr / PROBES / len(h.fqns)
        print(
            f"hessian trace: {t_tr:.2f} s for {PROBES} probes x {len(h.fqns)} layers; one "
            f"forward+backward {t_bwd * 1e3:.1f} ms; per probe {t_tr / PROBES * 1e3:.1f} ms "
            f"({t_tr / PROBES / t_bwd:.1f}x a backward); per layer (all probes) "
            f"{t_tr / len(h.fqns) * 1e3:.0f} ms = {t_tr / len(h.fqns) / t_bwd:.1f} backward "
            f"passes; per layer per probe {per_layer_probe / t_bwd:.2f}x"
        )


if __name__ == "__main__":
    main()
