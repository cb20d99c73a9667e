"""Which layers feed which: the data flow the transforms need, from a ``torch.fx`` trace.

A *chain* is layer A's output reaching layer B's input through operations that act on each
channel alone and commute with a positive per-channel scale (``f(x / s) = f(x) / s`` for
``s > 0``): ReLU, LeakyReLU, PReLU, identity, dropout, max / average pooling, and a flatten
(channel ``i`` then maps onto a run of B's input features). Nothing else may read A's output
or any tensor in between. ReLU6 (and hardtanh) are *not* scale-equivariant (the clip at 6
does not scale): chains through them are reported separately and skipped by CLE (AIMET
replaces ReLU6 by ReLU first, which changes the float model; quantviz keeps the model's
function and leaves such pairs alone). A BatchNorm right after a layer is reported for
``fold_bn``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from quantviz.model.handle import ModelHandle

__all__ = ["Chain", "ModelGraph", "model_graph"]

_EQUIVARIANT_MODULES = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)
_CLIPPING_MODULES = (nn.ReLU6, nn.Hardtanh)
_EQUIVARIANT_FUNCTIONS = {
    F.relu,
    torch.relu,
    F.leaky_relu,
    F.dropout,
    F.max_pool1d,
    F.max_pool2d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
}
_FLATTEN_FUNCTIONS = {torch.flatten}
_EQUIVARIANT_METHODS = {"relu", "contiguous"}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}
_CONV_KINDS = ("conv1d", "conv2d", "conv3d")


@dataclass(frozen=True)
class Chain:
    """Layer ``first`` feeds layer ``second`` through ``ops`` (names, for notes)."""

    first: str
    second: str
    ops: tuple[str, ...]
    flatten: bool  # a flatten between: each channel of first is a run of second's inputs
    clipping: bool  # a ReLU6 / hardtanh between (not scale-equivariant)
    batchnorm: str | None = None  # a BatchNorm module right after first (not folded)


@dataclass
class ModelGraph:
    """The traced data flow between the quantizable layers of a model."""

    chains: list[Chain]
    #: layer fqn -> BatchNorm module fqn applied right after it (its only reader)
    batchnorms: dict[str, str]
    #: norm module fqn -> the linear layers reading its output (and nothing else reads it)
    norm_groups: dict[str, list[str]]
    traced: bool
    reason: str = ""


def _is_norm(mod: nn.Module) -> bool:
    return isinstance(mod, nn.LayerNorm | nn.RMSNorm) or type(mod).__name__.endswith("RMSNorm")


def model_graph(handle: ModelHandle) -> ModelGraph:
    """Trace ``handle``'s model with ``torch.fx`` and find chains, BatchNorms and norm groups.

    A model fx cannot trace (data-dependent control flow, a TorchScript or exported program)
    gives an empty graph with ``traced=False`` and the reason; transformer decoders of the
    Llama family are recognised by their module structure instead (see :func:`llama_blocks`).
    """
    import torch.fx

    if handle.flavour != "nn":
        return ModelGraph([], {}, {}, False, f"a {handle.flavour} model cannot be traced")
    try:
        gm = torch.fx.symbolic_trace(handle.module)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ModelGraph([], {}, {}, False, f"torch.fx cannot trace it ({msg[:120]})")
    by_module = {lay.module_fqn: lay for lay in handle.layers}
    modules = dict(handle.module.named_modules())
    chains: list[Chain] = []
    bns: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        target = str(node.target)
        mod = modules.get(target)
        lay = by_module.get(target)
        if lay is not None and lay.kind in (*_CONV_KINDS, "linear"):
            ch = _follow(node, lay.fqn, by_module, modules)
            if ch is not None:
                if ch.batchnorm is not None:
                    bns[lay.fqn] = ch.batchnorm
                if ch.second:
                    chains.append(ch)
            continue
        if mod is not None and _is_norm(mod):
            readers = list(node.users)
            names: list[str] = []
            for u in readers:
                ul = by_module.get(str(u.target)) if u.op == "call_module" else None
                if ul is None or ul.kind != "linear" or u.args[0] is not node:
                    names = []
                    break
                names.append(ul.fqn)
            if names:
                groups[target] = names
    return ModelGraph(chains, bns, groups, True)


def _follow(
    node: Any, fqn: str, by_module: dict[str, Any], modules: dict[str, nn.Module]
) -> Chain | None:
    ops: list[str] = []
    flatten = clipping = False
    bn: str | None = None
    cur = node
    while True:
        users = list(cur.users)
        if len(users) != 1:
            return None
        u = users[0]
        if not u.args or u.args[0] is not cur:
            return None
        if u.op == "call_module":
            target = str(u.target)
            lay = by_module.get(target)
            if lay is not None:
                if lay.kind not in (*_CONV_KINDS, "linear"):
                    return None
                return Chain(fqn, lay.fqn, tuple(ops), flatten, clipping, bn)
            mod = modules.get(target)
            if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d) and not ops:
                bn = target
                ops.append(f"batchnorm {target}")
                # a BatchNorm is folded by fold_bn; the chain through it is not equalized
                nxt = _follow(u, fqn, by_module, modules)
                if nxt is None or not nxt.second:
                    return Chain(fqn, "", tuple(ops), False, False, bn)
                return Chain(fqn, nxt.second, (*ops, *nxt.ops), nxt.flatten, nxt.clipping, bn)
            if isinstance(mod, _CLIPPING_MODULES):
                clipping = True
            elif not isinstance(mod, _EQUIVARIANT_MODULES):
                return None
            ops.append(type(mod).__name__)
        elif u.op == "call_function":
            fn = u.target
            if fn in _FLATTEN_FUNCTIONS:
                flatten = True
            elif fn is F.relu6 or fn is F.hardtanh:
                clipping = True
            elif fn not in _EQUIVARIANT_FUNCTIONS and fn is not operator.pos:
                return None
            ops.append(getattr(fn, "__name__", str(fn)))
        elif u.op == "call_method":
            if u.target in _FLATTEN_METHODS:
                flatten = True
            elif u.target not in _EQUIVARIANT_METHODS:
                return None
            ops.append(str(u.target))
        else:
            return None
        cur = u


@dataclass(frozen=True)
class LlamaBlock:
    """One decoder layer of a Llama-family model (module fqns)."""

    prefix: str
    input_norm: str
    post_norm: str
    q: str
    k: str
    v: str
    o: str
    gate: str
    up: str
    down: str


@dataclass(frozen=True)
class LlamaModel:
    embed: str
    blocks: tuple[LlamaBlock, ...]
    final_norm: str
    head: str | None
    num_heads: int
    num_kv_heads: int
    head_dim: int


def llama_blocks(module: nn.Module) -> LlamaModel | None:
    """The structure of a Llama-family decoder (Llama, Mistral, Qwen2: RMSNorm, q/k/v/o and
    gate/up/down projections), found by module names; ``None`` for anything else."""
    mods = dict(module.named_modules())
    blocks = []
    for name, mod in mods.items():
        if not all(hasattr(mod, a) for a in ("input_layernorm", "post_attention_layernorm")):
            continue
        p = f"{name}." if name else ""
        need = {
            "q": f"{p}self_attn.q_proj",
            "k": f"{p}self_attn.k_proj",
            "v": f"{p}self_attn.v_proj",
            "o": f"{p}self_attn.o_proj",
            "gate": f"{p}mlp.gate_proj",
            "up": f"{p}mlp.up_proj",
            "down": f"{p}mlp.down_proj",
        }
        if not all(isinstance(mods.get(v), nn.Linear) for v in need.values()):
            return None
        blocks.append(
            LlamaBlock(name, f"{p}input_layernorm", f"{p}post_attention_layernorm", **need)
        )
    if not blocks:
        return None
    cfg = getattr(module, "config", None)
    embed = next((n for n, m in mods.items() if n.endswith("embed_tokens")), None)
    final = next((n for n in mods if n.endswith(".norm") and _is_norm(mods[n])), None)
    if embed is None or final is None or cfg is None:
        return None
    heads = int(getattr(cfg, "num_attention_heads", 0))
    kv = int(getattr(cfg, "num_key_value_heads", heads) or heads)
    hd = int(getattr(cfg, "head_dim", 0) or (cfg.hidden_size // max(heads, 1)))
    head = "lm_head" if isinstance(mods.get("lm_head"), nn.Linear) else None
    return LlamaModel(embed, tuple(blocks), final, head, heads, kv, hd)
