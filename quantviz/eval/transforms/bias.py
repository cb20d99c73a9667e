"""Empirical bias correction (DFQ, Nagel et al. 2019; AIMET's empirical variant).

Quantizing a layer's weights shifts the mean of its outputs: ``E[y_q] - E[y]`` per output
channel is not zero. On the calibration inputs, layer by layer in forward order, the mean
of each output channel is measured twice — on the float model (as transformed so far) and on
the model whose weights are quantized under the configuration (every layer before it already
corrected) — and the difference is subtracted from the layer's bias (a layer without a bias
gets one added to its output). Weight quantization only, with nearest rounding (AdaRound and
GPTQ compensate their own error); activation quantization is not part of the measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import torch

from quantviz.core import quantize
from quantviz.eval.results import Progress
from quantviz.eval.transforms.context import TransformContext
from quantviz.eval.transforms.state import Transformed, transformed

__all__ = ["bias_correction", "channel_mean"]


def channel_mean(y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per-channel sum (float64) and count of a layer output (channels: dim 1 for conv
    outputs of rank > 2, the last dim otherwise)."""
    y = y.detach().to(torch.float64)
    if y.dim() > 2:
        c = y.shape[1]
        flat = y.transpose(0, 1).reshape(c, -1)
    else:
        flat = y.reshape(-1, y.shape[-1]).t()
    return flat.sum(1), int(flat.shape[1])


def _means(
    ctx: TransformContext, state: Transformed, fqns: list[str], swap: dict[str, torch.Tensor]
) -> Generator[None, None, dict[str, torch.Tensor]]:
    h = ctx.handle
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def obs(fqn: str) -> Callable[[torch.Tensor], None]:
        def hook(y: torch.Tensor) -> None:
            s, n = channel_mean(y)
            sums[fqn] = s if fqn not in sums else sums[fqn] + s
            counts[fqn] = counts.get(fqn, 0) + n

        return hook

    removers = []
    swapped: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    with transformed(h, state):
        try:
            for fqn, t in swap.items():
                p = h.weight(fqn)
                swapped.append((p, p.data))  # type: ignore[arg-type]
                p.data = t
            for f in fqns:
                removers.append(h.add_hooks(f, post=obs(f)))
            for _ in ctx.run("bias_correction"):
                yield None
        finally:
            for r in removers:
                r()
            for p, orig in reversed(swapped):
                p.data = orig
    return {f: sums[f] / counts[f] for f in sums}


def bias_correction(
    ctx: TransformContext, state: Transformed, params: dict[str, Any]
) -> Generator[Progress, None, None]:
    h = ctx.handle
    todo = [
        lay.fqn
        for lay in h.layers
        if lay.kind in ("conv1d", "conv2d", "conv3d", "linear")
        and ctx.config.resolve(lay.fqn).weight is not None
    ]
    if not todo:
        raise ValueError("bias_correction: no layer has quantized weights in this config")
    n = len(todo) + 1
    gen = _means(ctx, state, todo, {})
    ref = yield from _relay(gen, 1, n)
    q: dict[str, torch.Tensor] = {}
    for f in todo:
        spec = ctx.config.resolve(f).weight
        assert spec is not None
        w = state.weight(h, f)
        try:
            q[f] = quantize(w, spec.with_(rounding="nearest"), metrics=False).dequantized
        except ValueError as exc:
            raise ValueError(f"bias_correction: layer {f}: weight: {exc}") from None
    for i, f in enumerate(todo, start=2):
        got = yield from _relay(_means(ctx, state, [f], q), i, n)
        if f not in got or f not in ref:
            continue
        shift = got[f] - ref[f]
        bn = state.bias_name(h, f)
        if bn is not None:
            b = state.current(h, bn).to(torch.float64)
            state.set(h, bn, b - shift)
        else:
            old = state.extra_bias.get(f)
            base = torch.zeros_like(shift) if old is None else old.to(torch.float64)
            state.extra_bias[f] = (base - shift).to(torch.float64)
        state.note(f, f"bias_correction: mean output shift {float(shift.abs().max()):.3g} removed")


def _relay(
    gen: Generator[None, None, dict[str, torch.Tensor]], i: int, n: int
) -> Generator[Progress, None, dict[str, torch.Tensor]]:
    try:
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                yield Progress(i, n, "bias_correction")
                return stop.value
    finally:
        gen.close()
