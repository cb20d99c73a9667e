"""Transforms and rounding on the bundled samples and a small Llama built from a config.

Prints (no assertions):

1. ``digits_mobilenet`` at W4 per-tensor weights (uniform symmetric min/max): top-1 with no
   transform, ``cle``, ``cle + bias_correction``, ``smoothquant``;
2. GPTQ and AdaRound against nearest rounding (RTN) on ``digits_cnn`` and
   ``digits_mobilenet`` (top-1);
3. a 2-layer Llama (hidden 64, random init, token data): each layer's objective
   ``||WX - QX||^2`` on the calibration inputs, GPTQ vs RTN, W4 per-channel and W3 g32;
4. ``sample:tiny_lm`` on its held-out tokens (issue #13's LM numbers): perplexity with GPTQ
   vs nearest rounding (RTN) at W3 g128 and W4 per-channel, with every layer's objective
   ``||WX - QX||^2`` (GPTQ's and RTN's); then W8A8 per-tensor (static min/max activation
   ranges calibrated on the same tokens) plain, with ``smoothquant`` and with ``hadamard``.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_transforms.py [--only digits|llama|tiny_lm]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.data import load_data
from quantviz.eval import evaluate, run
from quantviz.eval.transforms import prepare_transforms
from quantviz.model import load_model


def _top1(h, data, cfg) -> tuple[float, float]:
    t0 = time.perf_counter()
    r = run(evaluate(h, data, cfg))
    return r.value, time.perf_counter() - t0


def mobilenet_w4() -> None:
    h = load_model("sample:digits_mobilenet")
    data = load_data(None, h)
    w4 = LayerConfig(weight=QuantSpec(bits=4))
    print("digits_mobilenet, W4 per-tensor weights (float activations), top-1:")
    for tr in ([], ["cle"], ["cle", "bias_correction"], ["smoothquant"], ["bias_correction"]):
        v, s = _top1(h, data, ModelConfig(default=w4, transforms=tr))
        print(f"  {'+'.join(tr) or 'none':<24} {100 * v:6.2f}%   ({s:.1f} s)")


def rounding_on_samples() -> None:
    print("rounding vs nearest (RTN), top-1:")
    for name, bits, gran in (
        ("digits_cnn", 2, "per_channel"),
        ("digits_cnn", 3, "per_tensor"),
        ("digits_mobilenet", 3, "per_channel"),
        ("digits_mobilenet", 4, "per_channel"),
    ):
        h = load_model(f"sample:{name}")
        data = load_data(None, h)
        row = []
        for rounding in ("nearest", "gptq", "adaround"):
            spec = QuantSpec(bits=bits, granularity=gran, rounding=rounding)
            v, s = _top1(h, data, ModelConfig(default=LayerConfig(weight=spec)))
            row.append(f"{rounding} {100 * v:6.2f}% ({s:.1f} s)")
        print(f"  {name:<17} W{bits} {gran:<11} " + "   ".join(row))


def llama_objectives() -> None:
    import transformers

    from tests.models import handle_of  # run from the repository root

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    m = transformers.LlamaForCausalLM(cfg).eval()
    x = torch.randint(0, 256, (32, 64))
    h = handle_of(m, x[:1], "tiny-llama")
    for spec in (
        QuantSpec(bits=4, granularity="per_channel", rounding="gptq"),
        QuantSpec(bits=3, granularity="per_group", group_size=32, rounding="gptq"),
    ):
        c = ModelConfig(
            default=LayerConfig(weight=spec),
            overrides=(("model.embed_tokens", LayerConfig(weight=None)),),
        )
        st = run(prepare_transforms(h, c, x))
        print(f"Llama (random init) W{spec.short()}: ||WX-QX||^2 per layer, GPTQ vs RTN")
        below = 0
        for fqn, r in st.rounding_info.items():
            ok = r["objective"] < r["rtn_objective"]
            below += ok
            print(
                f"  {fqn:<36} gptq {r['objective']:10.4g}  rtn {r['rtn_objective']:10.4g}"
                f"  ratio {r['objective'] / r['rtn_objective']:.3f}"
            )
        print(f"  GPTQ below RTN on {below} of {len(st.rounding_info)} layers")


def tiny_lm_numbers() -> None:
    h = load_model("sample:tiny_lm")
    data = load_data(None, h)
    print("sample:tiny_lm, held-out tokens: perplexity (lower is better)")
    for spec in (
        QuantSpec(bits=3, granularity="per_group", group_size=128),
        QuantSpec(bits=4, granularity="per_channel"),
    ):
        res = {}
        for rounding in ("nearest", "gptq"):
            t0 = time.perf_counter()
            cfg = ModelConfig(default=LayerConfig(weight=spec.with_(rounding=rounding)))
            res[rounding] = run(evaluate(h, data, cfg))
            r = res[rounding]
            print(
                f"  W{spec.short()} {rounding:<8} perplexity {r.value:9.3f} (float "
                f"{r.baseline:.3f}, {100 * (r.value / r.baseline - 1):+.2f}%)  KL {r.kl:.4f}  "
                f"top-1 {100 * (r.top1_agreement or 0):.2f}%  ({time.perf_counter() - t0:.0f} s)"
            )
        print(f"  W{spec.short()}: ||WX-QX||^2 per layer on the calibration tokens, GPTQ vs RTN")
        below = n = 0
        for lay in res["gptq"].layers:
            ri = lay.get("rounding")
            if ri is None:  # embeddings cannot learn rounding: nearest
                print(f"    {lay['fqn']:<32} (nearest: {lay.get('notes') or 'no rounding'})")
                continue
            n += 1
            below += ri["objective"] < ri["rtn_objective"]
            g, rtn = ri["objective"], ri["rtn_objective"]
            print(f"    {lay['fqn']:<32} gptq {g:10.4g}  rtn {rtn:10.4g}  ratio {g / rtn:.3f}")
        print(f"  GPTQ below RTN on {below} of {n} layers")
    w8a8 = LayerConfig(
        weight=QuantSpec(bits=8, granularity="per_tensor"),
        activation=QuantSpec(bits=8, granularity="per_tensor"),
    )
    print("  W8A8 per-tensor (weights and static input activations, min/max):")
    for tr in ([], ["smoothquant"], ["hadamard"]):
        t0 = time.perf_counter()
        r = run(evaluate(h, data, ModelConfig(default=w8a8, transforms=tr)))
        print(
            f"    {'+'.join(tr) or 'plain':<12} perplexity {r.value:9.3f} (float {r.baseline:.3f}, "
            f"{100 * (r.value / r.baseline - 1):+.2f}%)  KL {r.kl:.4f}  "
            f"top-1 {100 * (r.top1_agreement or 0):.2f}%  ({time.perf_counter() - t0:.0f} s)"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("digits", "llama", "tiny_lm"))
    only = ap.parse_args().only
    if only in (None, "digits"):
        mobilenet_w4()
        rounding_on_samples()
    if only in (None, "llama"):
        llama_objectives()
    if only in (None, "tiny_lm"):
        tiny_lm_numbers()
