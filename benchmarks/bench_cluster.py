"""A 12-point sweep in this process vs as Ray tasks on a local cluster (printed, not asserted).

Points: weight bits 2,3,4,5,6,8 x per-channel / per-tensor (12 configurations), every layer.
Models: the bundled ``sample:digits_mobilenet`` on the digits test split, and a synthetic
100M-parameter MLP (six 4096x4096 Linear layers, random weights, 400 MB of float32) on 32
random inputs. For each: the sweep in this process (one torch thread), then on a local
Ray started with 1 and with 2 CPUs (one task per CPU, one torch thread per task).

Reported apart: Ray's start-up; putting the model into the object store (``ray.put`` of the
handle + data + baseline, once per model); reading it back in a worker (``ray.get`` in a
task); the overhead per task (a task that does nothing, and what a point costs on one
worker beyond the in-process point). The float baseline is computed once beforehand and
shared by every run. The model is put once per Ray instance (as ``Cluster`` does); the
cluster sweep time includes each worker rebuilding the model from the store on its first
task.

    python benchmarks/bench_cluster.py [--quick]   # --quick: the digits model only
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

# one thread from the start, as every Ray task runs (one CPU, OMP_NUM_THREADS=1): torch's
# own two threads were 14x slower on the busy shared 2-core machine these numbers come from,
# and a pool started with two threads keeps costing after set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantviz.core import LayerConfig, ModelConfig
from quantviz.core.defaults import DEFAULT_WEIGHT
from quantviz.data import EvalData, load_data, load_model_for_data
from quantviz.eval import EvalResult, WeightCache, compute_baseline, evaluate, run
from quantviz.eval.cluster import Cluster
from quantviz.model.handle import ModelHandle
from quantviz.model.layers import discover_layers

BITS = (2, 3, 4, 5, 6, 8)
GRANULARITIES = ("per_channel", "per_tensor")


def points() -> list[tuple[str, ModelConfig]]:
    out = []
    for g in GRANULARITIES:
        for b in BITS:
            spec = DEFAULT_WEIGHT.with_(bits=b, granularity=g)
            out.append((f"W{spec.short()}", ModelConfig(default=LayerConfig(weight=spec))))
    return out


def digits() -> tuple[ModelHandle, EvalData]:
    h = load_model_for_data("sample:digits_mobilenet", None)
    return h, load_data(None, h)


def mlp_100m() -> tuple[ModelHandle, EvalData]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(6):
        lin = nn.Linear(4096, 4096)
        nn.init.normal_(lin.weight, std=4096**-0.5)
        layers += [lin, nn.ReLU()] if i < 5 else [lin]
    module = nn.Sequential(*layers).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    example = torch.randn(1, 4096)
    h = ModelHandle("synthetic:mlp100m", "mlp100m", module, [], example)
    h.layers = discover_layers(module, example)
    x = torch.randn(32, 4096)
    return h, EvalData("random x32", x, None, x)


def in_process(h: ModelHandle, d: EvalData, base, pts) -> tuple[float, list[EvalResult]]:
    cache = WeightCache()
    t0 = time.perf_counter()
    res = [run(evaluate(h, d, cfg, baseline=base, cache=cache, name=n)) for n, cfg in pts]
    return time.perf_counter() - t0, res


def _get_seconds(box):  # runs in a worker: read the model back and rebuild it
    import time as _t

    import ray as _ray

    from quantviz.eval.transport import unpack

    t0 = _t.perf_counter()
    handle, _data, _base = unpack(_ray.get(box[0]))
    n = sum(p.numel() for p in handle.module.parameters())
    return _t.perf_counter() - t0, n


def _noop(_shared, item):
    return item


def main() -> None:
    quick = "--quick" in sys.argv
    import ray

    models = [("digits_mobilenet", digits())] + ([] if quick else [("mlp 100M", mlp_100m())])
    pts = points()
    print(f"torch threads in this process: {torch.get_num_threads()}; cores: {os.cpu_count()}")
    here: dict[str, tuple[float, list[EvalResult], object]] = {}
    for name, (h, d) in models:
        base = run(compute_baseline(h, d))
        t, res = in_process(h, d, base, pts)
        here[name] = (t, res, base)
        params = sum(p.numel() for p in h.module.parameters())
        print(
            f"{name}: {params / 1e6:.2f}M params, {len(d)} samples; in-process sweep of "
            f"{len(pts)} points {t:.2f} s ({t / len(pts):.3f} s/point)",
            flush=True,
        )
    for cpus in (1, 2):
        t0 = time.perf_counter()
        cluster = Cluster("local", num_cpus=cpus).connect()
        print(
            f"\n== local Ray, {cpus} CPU(s): start-up {time.perf_counter() - t0:.1f} s", flush=True
        )
        h0, d0 = models[0][1]
        run(cluster.map(_noop, range(2 * cpus), h0, d0))  # workers up, torch imported
        n = 40
        t0 = time.perf_counter()
        run(cluster.map(_noop, range(n), h0, d0))
        noop = (time.perf_counter() - t0) / n
        print(f"overhead per task (a task that does nothing): {1000 * noop:.1f} ms", flush=True)
        get = ray.remote(num_cpus=1)(_get_seconds)
        for name, (h, d) in models:
            t_here, res_here, base = here[name]
            cluster._puts.clear()  # measure the put
            t0 = time.perf_counter()
            ref = cluster.share(h, d, base)
            put = time.perf_counter() - t0
            got, _n = ray.get(get.remote([ref]))
            mb = h.float_bytes / 2**20
            print(
                f"{name}: object store: put {put:.3f} s ({mb / max(put, 1e-9):.0f} MB/s), "
                f"get + rebuild in a worker {got:.3f} s ({mb:.0f} MB of weights)",
                flush=True,
            )
            t0 = time.perf_counter()
            outs = run(cluster.run(h, d, pts, baseline=base, stats={}))
            t = time.perf_counter() - t0
            same = all(
                isinstance(o, EvalResult) and o.value == r.value for o, r in zip(outs, res_here)
            )
            failed = [o for o in outs if not isinstance(o, EvalResult)]
            if failed:
                print(f"{name}: {len(failed)} points failed, e.g. {failed[0]}", flush=True)
            extra = (t * cpus - t_here) / len(pts)
            print(
                f"{name}: cluster sweep {t:.2f} s = {t / t_here:.2f}x in-process "
                f"(speed-up {t_here / t:.2f}x); per point {t / len(pts):.3f} s; "
                f"cost per point beyond in-process x {cpus} CPU(s): {extra:+.3f} s; "
                f"values equal: {same}",
                flush=True,
            )
        cluster.close()


if __name__ == "__main__":
    main()
