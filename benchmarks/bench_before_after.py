"""What "before and after" costs (issue 13), as ratios (wall clock, best of ``--repeat``).

1. ``ActivationStats.update`` now also sums x .. x^4 of its histogram sample (kurtosis):
   those sums timed alone vs the whole update.
2. The activation view's "after": the transforms job with the capture of every layer's
   input under the transforms vs the transforms alone and vs a plain calibration pass
   (sample:tiny_lm, W8A8, smoothquant).
3. The error-propagation strip with and without the remedies vs the config alone
   (sample:digits_mobilenet, W4 per tensor, cle + bias_correction).

    python benchmarks/bench_before_after.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantviz.app import AppController, run_job
from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec
from quantviz.eval import calibrate, run
from quantviz.eval.before_after import transformed_activations
from quantviz.eval.debug import debug
from quantviz.eval.transforms import TransformStore, prepare_transforms
from quantviz.model.capture import ActivationStats


def best(fn, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def bench_moments(repeat: int) -> None:
    from quantviz.model.capture import DEFAULT_SAMPLE

    x = torch.randn(64, 512, 512)
    sample = x.reshape(-1)[:: x.numel() // DEFAULT_SAMPLE].contiguous()

    def update() -> None:
        ActivationStats().update(x)

    def moments() -> None:
        c2 = sample * sample
        float(sample.sum())
        float(c2.sum())
        float(torch.dot(c2, sample))
        float(torch.dot(c2, c2))

    u, m = best(update, repeat), best(moments, repeat)
    print(f"ActivationStats.update of {x.numel() / 1e6:.1f}M values: {u * 1e3:.1f} ms")
    print(
        f"  of which the kurtosis sums on its {sample.numel()}-value sample: "
        f"{m * 1e3:.2f} ms ({m / u:.2f} of the update)"
    )


def bench_capture(repeat: int) -> None:
    ctl = AppController()
    run_job(ctl.open_model_job("sample:tiny_lm"))
    h, data = ctl.session.handle, ctl.session.data
    cfg = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=8), activation=QuantSpec(bits=8)),
        transforms=["smoothquant"],
    )

    def plain() -> None:
        run(calibrate(h, data, list(h.fqns), {}))

    def transforms() -> None:
        run(prepare_transforms(h, cfg, data.calib_x, store=TransformStore()))

    def capture() -> None:
        from quantviz.eval.apply import WeightCache

        run(transformed_activations(h, data, cfg, cache=WeightCache()))

    p, t, c = best(plain, repeat), best(transforms, repeat), best(capture, repeat)
    print(f"tiny_lm ({h.total_params / 1e6:.1f}M params, {len(h.fqns)} layers):")
    print(f"  calibration pass (float model)       {p:.3f} s")
    print(f"  smoothquant alone                    {t:.3f} s")
    print(f"  smoothquant + capture under it       {c:.3f} s  ({c / p:.2f}x a calibration pass)")


def bench_debug(repeat: int) -> None:
    ctl = AppController()
    run_job(ctl.open_model_job("sample:digits_mobilenet"))
    h, data = ctl.session.handle, ctl.session.data
    cfg = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=4)), transforms=["cle", "bias_correction"]
    )
    s = ctl.session
    s.add_config("cle", cfg)
    s.make_current("cle")

    def alone() -> None:
        run(debug(h, data, cfg))

    def both() -> None:
        ctl.weight_cache = type(ctl.weight_cache)()
        run_job(ctl.debug_job())

    a, b = best(alone, repeat), best(both, repeat)
    print(f"digits_mobilenet debug, cle+bias_correction: {a:.3f} s; with and without: {b:.3f} s")
    print(f"  ratio {b / a:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    bench_moments(args.repeat)
    bench_capture(args.repeat)
    bench_debug(args.repeat)


if __name__ == "__main__":
    main()
