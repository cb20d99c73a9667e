"""Time ``quantize`` per quantizer x granularity against the memory-bandwidth floor.

Prints, for 1M and 10M float32 weights, the median time of ``quantize`` (dequantized output;
the metrics are computed lazily and timed apart in the "+metrics" rows) as a ratio to
``dst.copy_(src)`` of the same tensor and to torch's own ``fake_quantize_per_*_affine``
(given precomputed scales, i.e. doing less work than ``quantize``, which also finds them).
"ms" writes into a reused ``out=`` buffer (the hot-path way); "ms new" allocates the
output, which for 40 MB costs ~10 ms of page faults (glibc returns such buffers to the OS).
A 1M tensor (4 MB) stays in the 32 MB L3 cache, so its copy "floor" is a cache copy.
Sorted rows are cached per tensor; each timed call starts from an empty cache, so the
k-means and mse/kl numbers include the sort.

The "uniform mse" / "uniform kl" rows time range calibration (8-bit symmetric) per tensor and
per channel; ``--calibrations ""`` skips them.

Every row is printed at 1 thread and at torch's default thread count (``--threads``);
``quantize`` itself picks its thread count per call (``core.quantizers.base.kernel_threads``:
one thread on a machine with no idle core), so its default-thread rows show that choice
against torch's kernels running at the default count.

    python benchmarks/bench_quantize.py [--sizes 1M,10M] [--repeat 5] [--calibrations mse,kl]
        [--threads 1,default]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from quantviz.core import QuantSpec, clear_cache, quantize

SHAPES = {"1M": (1024, 1024), "10M": (4096, 2560)}
QUANTIZERS = ["uniform", "log2", "kmeans", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "nf4"]
GRANS = ["per_tensor", "per_channel", "per_group"]


def timeit(fn, repeat: int) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1M,10M")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quantizers", default=",".join(QUANTIZERS))
    ap.add_argument("--calibrations", default="mse,kl")
    ap.add_argument("--threads", default="1,default")
    args = ap.parse_args()
    default = torch.get_num_threads()
    for th in args.threads.split(","):
        n = default if th == "default" else int(th)
        torch.set_num_threads(n)
        run_all(args, n)
    torch.set_num_threads(default)


def run_all(args: argparse.Namespace, threads: int) -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {threads} threads")
    print(
        f"{'size':>4} {'quantizer':>9} {'granularity':>12} {'ms':>9} {'x copy':>7} {'x torch':>8}"
    )
    for size in args.sizes.split(","):
        shape = SHAPES[size]
        w = torch.randn(shape) * torch.rand(shape[0], 1)  # channels of different ranges
        dst = torch.empty_like(w)
        t_copy = timeit(lambda: dst.copy_(w), args.repeat * 4)
        amax = w.abs().amax()
        s_t = float(amax / 127.5)
        s_c = (w.abs().amax(dim=1) / 127.5).clamp_min(1e-8)
        z_c = torch.zeros(shape[0], dtype=torch.int32)
        t_fq = {
            "per_tensor": timeit(
                lambda: torch.fake_quantize_per_tensor_affine(w, s_t, 0, -128, 127), args.repeat
            ),
            "per_channel": timeit(
                lambda: torch.fake_quantize_per_channel_affine(w, s_c, z_c, 0, -128, 127),
                args.repeat,
            ),
        }
        print(f"{size:>4} {'copy':>9} {'':>12} {t_copy * 1e3:9.2f} {1.0:7.2f}")
        for g, t in t_fq.items():
            print(f"{size:>4} {'torch fq':>9} {g:>12} {t * 1e3:9.2f} {t / t_copy:7.2f} {1.0:8.2f}")
        for q in args.quantizers.split(","):
            for g in GRANS:
                spec = QuantSpec(bits=4 if q != "uniform" else 8, quantizer=q, granularity=g)
                slow = q == "kmeans" and g != "per_tensor"

                def run(spec=spec, out=None):
                    clear_cache()
                    return quantize(w, spec, out=out)

                n = 1 if slow else args.repeat
                t = timeit(lambda spec=spec: run(spec, dst), n)
                t_new = timeit(lambda spec=spec: run(spec), n)
                ref = t_fq.get(g, t_fq["per_channel"])
                print(
                    f"{size:>4} {q:>9} {g:>12} {t * 1e3:9.2f} {t / t_copy:7.2f} {t / ref:8.2f} "
                    f"{t_new * 1e3:8.2f}"
                )
                if q == "uniform" and g != "per_group":
                    for cal in filter(None, args.calibrations.split(",")):
                        cspec = spec.with_(calibration=cal)
                        t_c = timeit(
                            lambda cspec=cspec: run(cspec, dst),
                            1 if g != "per_tensor" else args.repeat,
                        )
                        print(
                            f"{size:>4} {'u ' + cal:>9} {g:>12} {t_c * 1e3:9.2f} "
                            f"{t_c / t_copy:7.2f} {t_c / ref:8.2f}"
                        )
                if q == "uniform":
                    t_m = timeit(lambda spec=spec: run(spec, dst).sqnr_db, args.repeat)
                    print(
                        f"{size:>4} {'+metrics':>9} {g:>12} {t_m * 1e3:9.2f} "
                        f"{t_m / t_copy:7.2f} {t_m / ref:8.2f}"
                    )


if __name__ == "__main__":
    main()
