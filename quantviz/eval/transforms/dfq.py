"""Data-free transforms: BatchNorm folding and cross-layer equalization (Nagel et al. 2019,
*Data-Free Quantization Through Weight Equalization and Bias Correction*)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import torch
from torch import nn

from quantviz.eval.results import Progress
from quantviz.eval.transforms.context import TransformContext
from quantviz.eval.transforms.graph import Chain
from quantviz.eval.transforms.state import Transformed, get_module

__all__ = ["cle", "fold_bn"]


def _out_shape(w: torch.Tensor) -> list[int]:
    return [-1] + [1] * (w.dim() - 1)


def fold_bn(
    ctx: TransformContext, state: Transformed, params: dict[str, Any]
) -> Generator[Progress, None, None]:
    """Fold every BatchNorm that directly follows a conv / linear into it:
    ``W' = W * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``; the
    BatchNorm then passes its input through unchanged (it is kept in the model, as the
    identity, so the model's structure and the loaded weights stay as they were)."""
    h = ctx.handle
    bns = ctx.graph.batchnorms
    todo = [(f, b) for f, b in bns.items() if b not in state.identity]
    for i, (fqn, bn_fqn) in enumerate(todo, start=1):
        bn = get_module(h.module, bn_fqn)
        assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
        if bn.running_mean is None or bn.running_var is None:
            state.note(fqn, f"fold_bn: {bn_fqn} has no running statistics; not folded")
            continue
        w = state.weight(h, fqn).to(torch.float64)
        mean = bn.running_mean.to(torch.float64)
        inv = torch.rsqrt(bn.running_var.to(torch.float64) + bn.eps)
        if bn.weight is not None:
            inv = inv * state.current(h, f"{bn_fqn}.weight").to(torch.float64)
        beta = (
            state.current(h, f"{bn_fqn}.bias").to(torch.float64)
            if bn.bias is not None
            else torch.zeros_like(mean)
        )
        state.set(h, h.layer(fqn).param_name, w * inv.reshape(_out_shape(w)))
        bname = state.bias_name(h, fqn)
        if bname is not None:
            b = state.current(h, bname).to(torch.float64)
            state.set(h, bname, (b - mean) * inv + beta)
        else:
            old = state.extra_bias.get(fqn)
            base = torch.zeros_like(mean) if old is None else old.to(torch.float64)
            state.extra_bias[fqn] = ((base - mean) * inv + beta).to(torch.float64)
        state.identity.append(bn_fqn)
        state.inserted.append(f"fold_bn: {bn_fqn} folded into {fqn} (run as the identity)")
        state.note(fqn, f"fold_bn: BatchNorm {bn_fqn} folded in")
        yield Progress(i, len(todo), "fold_bn")


def _module(ctx: TransformContext, fqn: str) -> nn.Module:
    return get_module(ctx.handle.module, ctx.handle.layer(fqn).module_fqn)


def _pair_kind(ctx: TransformContext, ch: Chain, c: int) -> tuple[str, int] | None:
    """How channel ``i`` of the first layer appears in the second layer's weight."""
    m2 = _module(ctx, ch.second)
    if isinstance(m2, nn.Linear):
        k = m2.in_features
        if k == c:
            return "in", 1
        if ch.flatten and k % c == 0:
            return "in", k // c
        return None
    if isinstance(m2, nn.modules.conv._ConvNd) and not ch.flatten:
        if m2.groups == 1 and m2.in_channels == c:
            return "in", 1
        if m2.groups == m2.in_channels == m2.out_channels == c:
            return "depthwise", 1
    return None


def _r2(w2: torch.Tensor, kind: str, rep: int, c: int) -> torch.Tensor:
    a = w2.abs()
    if kind == "depthwise":
        return a.reshape(c, -1).amax(1)
    o = a.shape[0]
    return a.reshape(o, c, rep, -1).amax(dim=(0, 2, 3))


def _scale2(w2: torch.Tensor, s: torch.Tensor, kind: str, rep: int) -> torch.Tensor:
    c = s.numel()
    if kind == "depthwise":
        return w2 * s.reshape(_out_shape(w2))
    o = w2.shape[0]
    return (w2.reshape(o, c, rep, -1) * s.reshape(1, c, 1, 1)).reshape(w2.shape)


def cle(
    ctx: TransformContext, state: Transformed, params: dict[str, Any]
) -> Generator[Progress, None, None]:
    """Cross-layer equalization over every conv / linear pair of :mod:`.graph`'s chains.

    For a pair (first layer's output channel ``i`` feeding the second layer's input channel
    ``i``), with ``r1_i`` the range (max |w|) of that output channel and ``r2_i`` the range
    of that input channel, DFQ's scale ``s_i = sqrt(r1_i / r2_i)`` divides channel ``i`` of the
    first layer (weights and bias) and multiplies it in the second; both ranges become
    ``sqrt(r1_i r2_i)``. A depthwise conv is a second layer per channel (its channel ``i``
    range) and, in turn, a first layer of the next pair (as in DFQ). Chains of more than two
    layers are equalized pair by pair, repeatedly, until no scale moves more than
    ``tolerance`` from 1 (or ``iterations`` passes). Pairs with a ReLU6 / hardtanh between
    are skipped (not scale-equivariant), as are pairs through an unfolded BatchNorm (use
    ``fold_bn`` first).
    """
    h = ctx.handle
    iterations = int(params.get("iterations", 100))
    tol = float(params.get("tolerance", 1e-4))
    pairs: list[tuple[Chain, str, int]] = []
    for ch in ctx.graph.chains:
        if ch.clipping:
            state.note(ch.first, f"cle: pair with {ch.second} skipped (ReLU6/clip between)")
            continue
        if ch.batchnorm is not None and ch.batchnorm not in state.identity:
            state.note(ch.first, f"cle: pair with {ch.second} skipped (fold {ch.batchnorm} first)")
            continue
        c = int(state.weight(h, ch.first).shape[0])
        pk = _pair_kind(ctx, ch, c)
        if pk is None:
            continue
        pairs.append((ch, pk[0], pk[1]))
    if not pairs:
        raise ValueError(
            f"cle: no conv/linear pair with only ReLU-like operations between in {h.name}"
            + ("" if ctx.graph.traced else f" ({ctx.graph.reason})")
        )
    w: dict[str, torch.Tensor] = {}
    b: dict[str, torch.Tensor | None] = {}
    for ch, _, _ in pairs:
        for f in (ch.first, ch.second):
            if f not in w:
                w[f] = state.weight(h, f).to(torch.float64)
                bn = state.bias_name(h, f)
                b[f] = None if bn is None else state.current(h, bn).to(torch.float64)
                if bn is None and f in state.extra_bias:
                    b[f] = state.extra_bias[f].to(torch.float64)
    total = {ch.first: torch.ones(w[ch.first].shape[0], dtype=torch.float64) for ch, _, _ in pairs}
    done = 0
    for it in range(1, iterations + 1):
        moved = 0.0
        for ch, kind, rep in pairs:
            w1, w2 = w[ch.first], w[ch.second]
            c = w1.shape[0]
            r1 = w1.abs().reshape(c, -1).amax(1)
            r2 = _r2(w2, kind, rep, c)
            ok = (r1 > 0) & (r2 > 0)
            s = torch.where(ok, torch.sqrt(r1 / torch.where(ok, r2, 1.0)), 1.0)
            w[ch.first] = w1 / s.reshape(_out_shape(w1))
            b1 = b[ch.first]
            if b1 is not None:
                b[ch.first] = b1 / s
            w[ch.second] = _scale2(w2, s, kind, rep)
            total[ch.first] = total[ch.first] * s
            moved = max(moved, float((s - 1).abs().max()))
        done = it
        yield Progress(it, iterations, "cle")
        if moved <= tol:
            break
    for f, t in w.items():
        state.set(h, h.layer(f).param_name, t)
        bn = state.bias_name(h, f)
        bf = b[f]
        if bf is not None:
            if bn is not None:
                state.set(h, bn, bf)
            else:
                state.extra_bias[f] = bf.to(torch.float64)
    for ch, _, _ in pairs:
        s = total[ch.first]
        state.note(
            ch.first,
            f"cle: equalized with {ch.second} ({done} iterations; channel scales "
            f"{float(s.min()):.3g}..{float(s.max()):.3g})",
        )
    yield Progress(iterations, iterations, "cle")
