"""Function-preserving rotations and scalings of activation outliers: SmoothQuant (Xiao et
al. 2023) and Hadamard rotations (QuaRot, Ashkboos et al. 2024)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch
from torch import nn

from quantviz.eval.results import Progress
from quantviz.eval.transforms.context import TransformContext
from quantviz.eval.transforms.graph import llama_blocks
from quantviz.eval.transforms.state import Transformed, get_module

__all__ = ["hadamard", "hadamard_matrix", "smoothquant"]


def hadamard_matrix(n: int) -> torch.Tensor:
    """The normalized Sylvester Hadamard matrix ``H / sqrt(n)`` (float64; symmetric and
    orthogonal: ``H @ H = I``), ``n`` a power of two (``scipy.linalg.hadamard``)."""
    from scipy.linalg import hadamard as _h

    if n < 1 or n & (n - 1):
        raise ValueError(f"hadamard: the size must be a power of two, got {n}")
    return torch.from_numpy(_h(n).astype(np.float64) / np.sqrt(n))


def _pow2(n: int) -> bool:
    return n >= 1 and not n & (n - 1)


# -- SmoothQuant ---------------------------------------------------------------------------
def _norm_groups(ctx: TransformContext) -> dict[str, list[str]]:
    """norm module fqn -> the linear layers (layer fqns) reading its output alone."""
    g = ctx.graph
    if g.traced:
        return dict(g.norm_groups)
    llama = llama_blocks(ctx.handle.module)
    if llama is None:
        return {}
    by_mod = {lay.module_fqn: lay.fqn for lay in ctx.handle.layers}
    out: dict[str, list[str]] = {}
    for b in llama.blocks:
        for norm, members in ((b.input_norm, (b.q, b.k, b.v)), (b.post_norm, (b.gate, b.up))):
            if all(m in by_mod for m in members):
                out[norm] = [by_mod[m] for m in members]
    return out


def smoothquant(
    ctx: TransformContext, state: Transformed, params: dict[str, Any]
) -> Generator[Progress, None, None]:
    """Migrate activation outliers into the weights of every linear layer.

    Per input channel ``j``: ``s_j = max|X_j|^alpha / max|W_:j|^(1 - alpha)`` (calibration
    inputs; over all the layers reading the same norm), ``X' = X / s`` and ``W' = W diag(s)``.
    For LayerNorm / RMSNorm -> linear patterns the ``1/s`` is folded into the norm's weight
    (and bias); for the other linear layers a scale is inserted in front of the layer (an
    elementwise multiply in the forward pass).
    """
    from quantviz.eval.transforms.state import transformed

    h = ctx.handle
    alpha = float(params.get("alpha", 0.5))
    lin = [  # nn.Linear only: a GPT-2 Conv1D stores its weight transposed
        lay.fqn
        for lay in h.layers
        if lay.kind == "linear" and isinstance(get_module(h.module, lay.module_fqn), nn.Linear)
    ]
    if not lin:
        raise ValueError(f"smoothquant: {h.name} has no linear layer")
    amax: dict[str, torch.Tensor] = {}

    def observer(fqn: str):
        def hook(x: torch.Tensor) -> None:
            a = x.detach().abs().reshape(-1, x.shape[-1]).amax(0).to(torch.float64)
            amax[fqn] = a if fqn not in amax else torch.maximum(amax[fqn], a)

        return hook

    removers = []
    batches = ctx.batches("smoothquant")
    with transformed(h, state):
        try:
            for f in lin:
                removers.append(h.add_hooks(f, pre=observer(f)))
            for i in ctx.run("smoothquant"):
                yield Progress(i, len(batches), "smoothquant")
        finally:
            for r in removers:
                r()
    groups = _norm_groups(ctx)
    tied = _tied_layers(h)
    for f in tied:
        state.note(f, "smoothquant: skipped (its weight is shared with another layer)")
    groups = {n: ms for n, ms in groups.items() if not tied & set(ms)}
    lin = [f for f in lin if f not in tied]
    grouped = {m for ms in groups.values() for m in ms}
    units: list[tuple[str | None, list[str]]] = [(n, ms) for n, ms in groups.items()]
    units += [(None, [f]) for f in lin if f not in grouped]
    for norm, members in units:
        if any(m not in amax for m in members):
            continue
        a = torch.stack([amax[m] for m in members]).amax(0)
        ws = [state.weight(h, m).to(torch.float64) for m in members]
        wmax = torch.stack([w.abs().amax(0) for w in ws]).amax(0)
        ok = (a > 0) & (wmax > 0)
        s = torch.where(ok, a.clamp_min(1e-12) ** alpha / wmax.clamp_min(1e-12) ** (1 - alpha), 1.0)
        s = torch.where(ok, s.clamp_min(1e-5), 1.0)
        nmod = get_module(h.module, norm) if norm is not None else None
        norm_w = getattr(nmod, "weight", None) if nmod is not None else None
        if norm is not None and isinstance(norm_w, nn.Parameter):
            g = state.current(h, f"{norm}.weight").to(torch.float64)
            state.set(h, f"{norm}.weight", g / s)
            if isinstance(getattr(nmod, "bias", None), nn.Parameter):
                nb = state.current(h, f"{norm}.bias").to(torch.float64)
                state.set(h, f"{norm}.bias", nb / s)
            where = f"folded into {norm}"
        else:
            inv = (1.0 / s).to(torch.float32)
            for m in members:
                state.pre_hooks.append((h.layer(m).module_fqn, _scale_hook(inv)))
            state.inserted.append(
                f"smoothquant: an input scale inserted in front of {', '.join(members)}"
            )
            where = "an input scale inserted in front"
        for m, w in zip(members, ws, strict=True):
            state.set(h, h.layer(m).param_name, w * s.reshape(1, -1))
            state.note(
                m,
                f"smoothquant(alpha={alpha:g}): input channels scaled "
                f"{float(s.min()):.3g}..{float(s.max()):.3g} ({where})",
            )
    yield Progress(len(batches), len(batches), "smoothquant")


def _scale_hook(inv: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def hook(x: torch.Tensor) -> torch.Tensor:
        return x * inv.to(x.dtype)

    return hook


def _rotate_hook(hmat: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def hook(x: torch.Tensor) -> torch.Tensor:
        return x @ hmat.to(x.dtype)

    return hook


def _tied_layers(h: Any) -> set[str]:
    """Layers whose weight parameter also belongs to another module (tied embeddings)."""
    owners: dict[int, int] = {}
    for mod in h.module.modules():
        for p in mod._parameters.values():
            if p is not None:
                owners[id(p)] = owners.get(id(p), 0) + 1
    return {lay.fqn for lay in h.layers if owners.get(id(h.weight(lay.fqn)), 0) > 1}


# -- Hadamard ------------------------------------------------------------------------------
def _blockdiag(h: torch.Tensor, n: int) -> torch.Tensor:
    return torch.block_diag(*([h] * n))


def hadamard(
    ctx: TransformContext, state: Transformed, params: dict[str, Any]
) -> Generator[Progress, None, None]:
    """Rotate with normalized Hadamard matrices fused into the weights (QuaRot-style).

    On a Llama-family decoder (Llama, Mistral, Qwen2): the residual stream — every RMSNorm
    weight is first folded into the linear layers that read it (and set to 1), then the
    embedding is multiplied by ``Q`` (``d x d``), every reader of the residual (q/k/v,
    gate/up, lm_head) by ``Q`` on its input side and every writer (o_proj, down_proj) by
    ``Q^T`` on its output side (RMSNorm commutes with an orthogonal ``Q``); the values of
    each attention head and o_proj's matching input columns by a per-head Hadamard; and
    down_proj's input by an online Hadamard (inserted in front of it; its weight takes the
    transpose), which spreads the outliers of the MLP's activations. On other models: every
    pair of linear layers with nothing but identity / dropout between (the hidden width a
    power of two) is rotated on the shared hidden dimension. Function-preserving in float.
    """
    h = ctx.handle
    llama = llama_blocks(h.module)
    if llama is not None:
        yield from _hadamard_llama(ctx, state, llama)
        return
    pairs = [
        c
        for c in ctx.graph.chains
        if not c.flatten
        and not c.clipping
        and c.batchnorm is None
        and all(o in ("Identity", "Dropout", "dropout", "contiguous") for o in c.ops)
        and h.layer(c.first).kind == "linear"
        and h.layer(c.second).kind == "linear"
        and _pow2(int(state.weight(h, c.first).shape[0]))
    ]
    if not pairs:
        raise ValueError(
            f"hadamard: nothing to rotate in {h.name}: it rotates the residual stream of "
            "Llama-family decoders and pairs of linear layers with only identity/dropout "
            "between whose shared width is a power of two"
        )
    for i, c in enumerate(pairs, start=1):
        w1 = state.weight(h, c.first).to(torch.float64)
        q = hadamard_matrix(w1.shape[0])
        state.set(h, h.layer(c.first).param_name, q @ w1)
        bn = state.bias_name(h, c.first)
        if bn is not None:
            state.set(h, bn, q @ state.current(h, bn).to(torch.float64))
        w2 = state.weight(h, c.second).to(torch.float64)
        state.set(h, h.layer(c.second).param_name, w2 @ q)
        state.note(c.first, f"hadamard: outputs rotated (pair with {c.second})")
        state.note(c.second, f"hadamard: inputs rotated (pair with {c.first})")
        yield Progress(i, len(pairs), "hadamard")


def _hadamard_llama(
    ctx: TransformContext, state: Transformed, m: Any
) -> Generator[Progress, None, None]:
    h = ctx.handle
    mods = dict(h.module.named_modules())
    by_mod = {lay.module_fqn: lay.fqn for lay in h.layers}

    def w(mod: str) -> torch.Tensor:
        return state.current(h, f"{mod}.weight").to(torch.float64)

    def put(mod: str, t: torch.Tensor) -> None:
        state.set(h, f"{mod}.weight", t)
        if mod in by_mod:
            state.note(by_mod[mod], "hadamard: rotated")

    def bias(mod: str, q: torch.Tensor) -> None:
        if isinstance(getattr(mods[mod], "bias", None), nn.Parameter):
            state.set(h, f"{mod}.bias", q @ state.current(h, f"{mod}.bias").to(torch.float64))

    hooked = {f for f, _ in state.pre_hooks}
    clash = [x for b in m.blocks for x in (b.q, b.k, b.v, b.o, b.gate, b.up) if x in hooked]
    if m.head is not None and m.head in hooked:
        clash.append(m.head)
    if clash:
        raise ValueError(
            f"hadamard: an earlier transform inserted an operation in front of {clash[0]}, "
            "which the rotation cannot pass through; put hadamard before smoothquant"
        )
    emb = w(m.embed)
    d = emb.shape[1]
    if not _pow2(d):
        raise ValueError(f"hadamard: the hidden size {d} of {h.name} is not a power of two")
    q = hadamard_matrix(d)
    ones = torch.ones(d, dtype=torch.float64)
    head_w = getattr(mods.get(m.head), "weight", None) if m.head else None
    tied = head_w is not None and head_w is getattr(mods[m.embed], "weight", None)
    g_final = w(m.final_norm)
    if tied and not torch.equal(g_final, ones):
        raise ValueError(
            f"hadamard: {h.name} ties lm_head to the embedding and its final norm has a "
            "weight other than 1: the two cannot take different rotations"
        )
    put(m.embed, emb @ q)
    if m.head is not None and not tied:
        put(m.head, (w(m.head) * g_final.reshape(1, -1)) @ q)
    state.set(h, f"{m.final_norm}.weight", ones)
    hd = m.head_dim
    rot_heads = _pow2(hd)
    hh = hadamard_matrix(hd) if rot_heads else None
    for i, b in enumerate(m.blocks, start=1):
        g_in, g_post = w(b.input_norm), w(b.post_norm)
        for mod in (b.q, b.k, b.v):
            put(mod, (w(mod) * g_in.reshape(1, -1)) @ q)
        for mod in (b.gate, b.up):
            put(mod, (w(mod) * g_post.reshape(1, -1)) @ q)
        state.set(h, f"{b.input_norm}.weight", ones)
        state.set(h, f"{b.post_norm}.weight", ones)
        wo = q @ w(b.o)
        bias(b.o, q)
        if hh is not None:
            put(b.v, _blockdiag(hh, m.num_kv_heads) @ w(b.v))
            bias(b.v, _blockdiag(hh, m.num_kv_heads))
            wo = wo @ _blockdiag(hh, m.num_heads)
        put(b.o, wo)
        wd = q @ w(b.down)
        bias(b.down, q)
        inter = wd.shape[1]
        if _pow2(inter):
            hi = hadamard_matrix(inter)
            wd = wd @ hi
            hi32 = hi.to(torch.float32)
            state.pre_hooks.append((b.down, _rotate_hook(hi32)))
            state.inserted.append(f"hadamard: an online rotation in front of {b.down}")
        elif b.down in by_mod:
            state.note(by_mod[b.down], f"hadamard: no online rotation (width {inter})")
        put(b.down, wd)
        yield Progress(i, len(m.blocks), "hadamard")
