"""Saving / opening a session with fine-tuned (QAT) weights vs safetensors alone.

A session holding one fine-tuned configuration of ``--params`` float32 parameters (split in
``--tensors`` tensors, GPT-2-small sized by default: 124M parameters, ~500 MB) and a few
configurations. quantviz: ``save_session`` (the weights file: safetensors bytes, SHA-256,
atomic write with fsync; then the session JSON) and ``load_session`` (the JSON, the weights
file read, hash checked, tensors decoded). Baseline: ``safetensors.torch.save_file`` and
``load_file`` of the same tensors (each touched: they are memory-mapped until read).
Prints seconds (median of ``--repeat``) and the ratios.

    python benchmarks/bench_session_tuned.py [--params 124000000] [--tensors 148] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", type=int, default=124_000_000)
    ap.add_argument("--tensors", type=int, default=148)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    from safetensors.torch import load_file, save_file

    from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec
    from quantviz.io.session_file import SessionData, load_session, save_session

    per = a.params // a.tensors
    g = torch.Generator().manual_seed(0)
    weights = {f"h.{i}.weight": torch.randn(per, generator=g) for i in range(a.tensors)}
    w2 = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=2, granularity="per_channel")))
    data = SessionData(
        model="sample:digits_cnn",
        data="sample:digits",
        configs={"default": ModelConfig(), "w2": w2, "w2 qat-ste": w2},
        current="w2 qat-ste",
        tuned={"w2 qat-ste": weights},
    )
    mb = sum(t.numel() * 4 for t in weights.values()) / 1e6
    times: dict[str, list[float]] = {k: [] for k in ("save", "load", "st_save", "st_load")}
    with tempfile.TemporaryDirectory() as d:
        path, plain = Path(d) / "s.quantviz", Path(d) / "plain.safetensors"
        for _ in range(a.repeat):
            t = time.perf_counter()
            save_session(path, data)
            times["save"].append(time.perf_counter() - t)
            t = time.perf_counter()
            back = load_session(path)
            times["load"].append(time.perf_counter() - t)
            assert all(torch.equal(back.tuned["w2 qat-ste"][k], v) for k, v in weights.items())
            del back
            t = time.perf_counter()
            save_file(weights, str(plain))
            times["st_save"].append(time.perf_counter() - t)
            t = time.perf_counter()
            got = load_file(str(plain))
            sum(float(v.sum()) for v in got.values())  # read every tensor (mmap until read)
            del got
            times["st_load"].append(time.perf_counter() - t)
    m = {k: statistics.median(v) for k, v in times.items()}
    print(f"fine-tuned weights: {a.params:,} parameters in {a.tensors} tensors ({mb:.0f} MB)")
    print(
        f"save_session  {m['save']:.2f} s   safetensors save_file {m['st_save']:.2f} s   "
        f"ratio {m['save'] / m['st_save']:.2f}"
    )
    print(
        f"load_session  {m['load']:.2f} s   safetensors load_file {m['st_load']:.2f} s   "
        f"ratio {m['load'] / m['st_load']:.2f}"
    )


if __name__ == "__main__":
    main()
