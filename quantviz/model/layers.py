"""Discover the quantizable layers of a model (their weights and activation hooks: handle.py).

Layers are recognised by what they do, not by their class name: one forward pass on the
example input runs under a :class:`~torch.utils._python_dispatch.TorchDispatchMode` that
sees every aten op - from eager modules, TorchScript and ``torch.export`` graphs alike - and
records which module parameter is used as the weight of a convolution, a matrix product
(linear) or an embedding lookup. That also finds custom-named modules (a scripted
``Conv2dStaticSamePadding``) and gives the MACs of each call from its real shapes. Subclasses
of the torch layer types that the forward pass never reaches are listed too (0 MACs).

The matrix product also tells which axis of a 2-D weight holds the output features: the
weight enters ``mm`` / ``addmm`` as the right factor either transposed (``nn.Linear``:
stored ``[out, in]``) or as stored (GPT-2's ``Conv1D``: ``[in, out]``, channel axis 1),
which the operand's strides show. Parameters sharing one storage (an ``lm_head`` tied to
the token embedding) are one layer, the first in module order, naming the others in
``LayerInfo.tied``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

# get_weight / add_hooks live with ModelHandle (handle.py), so the two modules do not import
# each other; they stay importable from here.
from quantviz.model.handle import LayerInfo, _direct_params, add_hooks, get_weight

__all__ = ["add_hooks", "discover_layers", "get_weight", "iter_submodules"]

_CLASS_KINDS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Conv1d, "conv1d"),
    (nn.Conv2d, "conv2d"),
    (nn.Conv3d, "conv3d"),
    (nn.ConvTranspose1d, "conv_transpose1d"),
    (nn.ConvTranspose2d, "conv_transpose2d"),
    (nn.ConvTranspose3d, "conv_transpose3d"),
    (nn.Linear, "linear"),
    (nn.Bilinear, "linear"),
    (nn.Embedding, "embedding"),
    (nn.EmbeddingBag, "embedding"),
)
_MATMUL_OPS = {
    "mm",
    "addmm",
    "bmm",
    "baddbmm",
    "matmul",
    "linear",
    "mv",
    "addmv",
    "_addmm_activation",
}
_CONV_OPS = {"convolution", "_convolution", "conv1d", "conv2d", "conv3d"}
_CONV_T_OPS = {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
_EMB_OPS = {"embedding", "embedding_bag", "_embedding_bag", "_embedding_bag_forward_only"}


@dataclass
class _Use:
    kind: str
    macs: int
    groups: int = 1
    #: axis of the stored weight holding the output features (None: not known from the op)
    axis: int | None = None


def _out_axis(operand: torch.Tensor, param: torch.Tensor, right: bool) -> int | None:
    """Which axis of the 2-D ``param`` holds the output features of a matrix product in
    which ``operand`` (``param`` itself or its transpose) is the right (``x @ W``, output
    features = its last axis) or left (``W @ x``: its first axis) factor."""
    if param.dim() != 2 or operand.dim() != 2:
        return None
    op_axis = 1 if right else 0
    same = tuple(operand.shape) == tuple(param.shape) and operand.stride() == param.stride()
    flipped = (
        tuple(operand.shape) == tuple(param.shape)[::-1]
        and operand.stride() == param.stride()[::-1]
    )
    if same and flipped:  # e.g. a [1, 1] weight: both readings are the same single value
        return 0
    if same:
        return op_axis
    if flipped:
        return 1 - op_axis
    return None


def _class_kind(mod: nn.Module) -> str | None:
    for cls, kind in _CLASS_KINDS:
        if isinstance(mod, cls):
            return kind
    if isinstance(mod, torch.jit.ScriptModule):  # scripted torch layers keep their class name
        name = getattr(mod, "original_name", "")
        for cls, kind in _CLASS_KINDS:
            if name == cls.__name__:
                return kind
    return None


def iter_submodules(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``named_modules()`` for eager, TorchScript and unflattened exported modules."""
    yield from module.named_modules()


def _class_name(mod: nn.Module, fqn: str) -> str:
    name = getattr(mod, "original_name", None)  # TorchScript keeps the Python class name
    if isinstance(name, str) and name and name not in ("InterpreterModule", "GraphModule"):
        return name
    graph = getattr(mod, "graph", None)  # unflattened torch.export: nn_module_stack metadata
    if isinstance(graph, torch.fx.Graph):
        for node in graph.nodes:
            stack = node.meta.get("nn_module_stack") or {}
            for path, typ in stack.values():
                if path.split("L['self'].")[-1] == fqn:
                    cls = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
                    return cls.rsplit(".", 1)[-1]
    return type(mod).__name__


def _storage_key(t: torch.Tensor) -> int | None:
    try:
        return t.untyped_storage().data_ptr() if t.numel() else None
    except (RuntimeError, NotImplementedError):
        return None


def _per_sample(numel: int, batch: int) -> int:
    return int(numel // max(batch, 1))


class _Recorder(TorchDispatchMode):
    """Record conv / matmul / embedding ops whose weight is one of the watched parameters."""

    def __init__(
        self, watched: dict[int, list[str]], batch: int, params: dict[int, torch.Tensor]
    ) -> None:
        super().__init__()
        self.watched = watched
        self.batch = batch
        self.params = params  # storage key -> the parameter (its shape and strides)
        self.uses: dict[str, list[_Use]] = {}

    def _match(self, t: Any) -> list[str]:
        if isinstance(t, torch.Tensor):
            key = _storage_key(t)
            if key is not None:
                return self.watched.get(key, [])
        return []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        with contextlib.suppress(Exception):  # measuring must never break the forward pass
            self._record(name, args, out)
        return out

    def _add(self, owners: list[str], use: _Use) -> None:
        for fqn in owners:
            self.uses.setdefault(fqn, []).append(use)

    def _record(self, name: str, args: tuple, out: Any) -> None:
        if name in _CONV_OPS or name in _CONV_T_OPS:
            owners = self._match(args[1]) if len(args) > 1 else []
            if not owners:
                return
            x, w = args[0], args[1]
            if name in ("convolution", "_convolution"):
                transposed, groups = bool(args[6]), int(args[8])
            elif name in _CONV_T_OPS:
                transposed = True
                groups = int(args[6]) if len(args) > 6 else 1
            else:
                transposed, groups = False, int(args[6]) if len(args) > 6 else 1
            nd = w.dim() - 2
            k = math.prod(w.shape[2:])
            if transposed:
                macs = _per_sample(x.numel(), self.batch) * w.shape[1] * k
                kind = f"conv_transpose{nd}d"
            else:
                macs = _per_sample(out.numel(), self.batch) * w.shape[1] * k
                kind = f"conv{nd}d"
            self._add(owners, _Use(kind, macs, groups))
        elif name in _MATMUL_OPS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            with_bias = name in ("addmm", "baddbmm", "addmv", "_addmm_activation")
            operands = tensors[1:3] if with_bias else tensors[:2]
            if len(operands) < 2:
                return
            inner = int(operands[0].shape[-1])  # the contracted dimension
            for i, t in enumerate(operands):
                owners = self._match(t)
                if owners:
                    if name == "linear":  # F.linear's weight is [out, in]
                        axis: int | None = 0
                    else:
                        axis = _out_axis(t, self.params[_storage_key(t) or 0], right=i == 1)
                    macs = _per_sample(out.numel(), self.batch) * inner
                    self._add(owners, _Use("linear", macs, axis=axis))
                    return
        elif name in _EMB_OPS:
            owners = self._match(args[0])
            if owners:
                self._add(owners, _Use("embedding", 0))


def discover_layers(module: nn.Module, example_input: torch.Tensor) -> list[LayerInfo]:
    """The quantizable layers of ``module``, in module order, measured on ``example_input``.

    A layer is a module parameter (normally ``weight``) used as the kernel of a convolution,
    the matrix of a matrix product, or an embedding table during a forward pass on
    ``example_input``; or the weight of a subclass of a torch Conv/ConvTranspose/Linear/
    Embedding module the forward pass did not reach. ``macs`` are per sample (batch size
    = ``example_input.shape[0]``).
    """
    candidates: list[tuple[str, str, nn.Module, torch.Tensor, str | None]] = []
    watched: dict[int, list[str]] = {}
    params: dict[int, torch.Tensor] = {}
    for mod_fqn, mod in iter_submodules(module):
        ckind = _class_kind(mod)
        for pname, p in _direct_params(mod).items():
            if p.dim() < 2 or (ckind is not None and pname != "weight"):
                continue
            qual = f"{mod_fqn}.{pname}" if mod_fqn else pname
            fqn = mod_fqn if pname == "weight" and mod_fqn else qual
            candidates.append((fqn, qual, mod, p, ckind))
            key = _storage_key(p)
            if key is not None:
                watched.setdefault(key, []).append(fqn)
                params.setdefault(key, p)

    batch = int(example_input.shape[0]) if example_input.dim() else 1
    rec = _Recorder(watched, batch, params)
    with torch.no_grad(), rec:
        module(example_input)

    # tied weights (an lm_head sharing the token embedding): one layer, the first in module
    # order; the others are listed in its ``tied``
    tied: dict[str, list[str]] = {}
    seen: dict[tuple[int, tuple[int, ...], tuple[int, ...], int], str] = {}
    for fqn, qual, _mod, p, _ck in candidates:
        key = _storage_key(p)
        if key is None:
            continue
        ident = (key, tuple(p.shape), tuple(p.stride()), int(p.storage_offset()))
        if ident in seen:
            tied.setdefault(seen[ident], []).append(qual)
        else:
            seen[ident] = fqn
            tied.setdefault(fqn, [])
    aliases = {q for qs in tied.values() for q in qs}

    layers: list[LayerInfo] = []
    for fqn, qual, mod, p, ckind in candidates:
        if qual in aliases:
            continue
        uses = rec.uses.get(fqn, [])
        all_uses = uses
        if ckind is not None:
            family = ckind.split("_")[0].rstrip("123d")  # conv / linear / embedding
            same = [u for u in uses if u.kind.startswith(family)]
            uses = same
            kind = ckind
        elif uses:
            kind = uses[0].kind
            uses = [u for u in uses if u.kind == kind]
        else:
            continue
        if tied.get(fqn):  # used as an embedding and as a head: both uses cost
            uses = all_uses
        axis = 1 if kind.startswith("conv_transpose") else 0  # [in, out/g, k...]
        if ckind is None and kind == "linear":
            axis = next((u.axis for u in uses if u.axis is not None), 0)
        shape = tuple(int(s) for s in p.shape)
        if axis == 1 and len(shape) == 2:  # stored [in, out]: quantized as [out, in]
            shape = shape[::-1]
        groups = getattr(mod, "groups", None)
        if not isinstance(groups, int):
            groups = uses[0].groups if uses else 1
        depthwise = (
            kind.startswith("conv") and "transpose" not in kind and (groups > 1 and p.shape[1] == 1)
        )
        bias = _direct_params(mod).get("bias")
        n_params = p.numel() + (bias.numel() if bias is not None and qual.endswith("weight") else 0)
        layers.append(
            LayerInfo(
                fqn=fqn,
                kind=kind,
                weight_shape=shape,
                params=int(n_params),
                depthwise=bool(depthwise),
                macs=int(sum(u.macs for u in uses)),
                bias=bias is not None and qual.endswith("weight"),
                class_name=_class_name(mod, qual.rpartition(".")[0]),
                param=qual,
                channel_axis=axis,
                tied=tuple(tied.get(fqn, ())),
            )
        )
    return layers
