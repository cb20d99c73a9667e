"""What the transforms produce, and the ``with`` block that puts it into the model.

:class:`Transformed` holds *new* tensors only (copy-on-write): a transform never writes into
a tensor of the loaded model; it reads the current (possibly already transformed) weights and
stores fresh tensors under the parameter's qualified name. :func:`transformed` swaps them in
(``param.data = new``, as :func:`quantviz.eval.apply.apply_config` does for quantized
weights), registers the inserted operations (an input scale, an online rotation, a skipped
BatchNorm) as forward hooks, and on exit — normal or by an exception — puts every original
tensor back (the very same storage) and removes the hooks: the float model is bit-identical
afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from quantviz.core import QuantSpec

if TYPE_CHECKING:
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = ["Transformed", "get_module", "param_name_of", "transformed"]

Hook = Callable[[torch.Tensor], torch.Tensor]


def get_module(root: nn.Module, fqn: str) -> nn.Module:
    """The submodule ``fqn`` of ``root`` (``""``: the root)."""
    return root.get_submodule(fqn) if fqn else root


def _owner(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    mod_fqn, _, attr = name.rpartition(".")
    return get_module(root, mod_fqn), attr


def param_name_of(root: nn.Module, name: str) -> str:
    """The canonical qualified name of the parameter ``name`` (tied parameters share one)."""
    owner, attr = _owner(root, name)
    p = owner._parameters.get(attr)
    if p is None:
        return name
    for n, q in root.named_parameters():
        if q is p:
            return n
    return name


@dataclass
class Transformed:
    """The outcome of the transforms (and roundings) of one configuration on one model.

    ``params``: qualified parameter name -> new tensor (same shape and dtype).
    ``pre_hooks`` / ``post_hooks``: ``(module fqn, fn)`` operations inserted in front of /
    after a module (``fn`` maps the tensor). ``identity``: modules whose output is replaced
    by their input (a BatchNorm folded into the layer before it). ``extra_bias``: layer fqn
    -> a bias added to the output of a layer that has none. ``notes``: layer fqn -> what was
    done to it (the inspector shows them). ``inserted``: what a plain weight file cannot
    carry (an inserted scale, an online rotation, a BatchNorm run as the identity).
    ``rounded``: ``(fqn, spec)`` -> weight rounded by AdaRound / GPTQ (dequantized);
    ``rounding_info``: fqn -> per-layer objective ``||WX - QX||^2`` of that rounding and of
    nearest rounding. ``stats``: calibration statistics gathered under this state.
    """

    key: tuple[Any, ...] = ()
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    pre_hooks: list[tuple[str, Hook]] = field(default_factory=list)
    post_hooks: list[tuple[str, Hook]] = field(default_factory=list)
    extra_bias: dict[str, torch.Tensor] = field(default_factory=dict)
    identity: list[str] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    inserted: list[str] = field(default_factory=list)
    rounded: dict[tuple[str, QuantSpec], torch.Tensor] = field(default_factory=dict)
    rounding_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, LayerStats] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (
            self.params or self.pre_hooks or self.post_hooks or self.extra_bias or self.identity
        )

    def note(self, fqn: str, text: str) -> None:
        self.notes.setdefault(fqn, []).append(text)

    def current(self, handle: ModelHandle, name: str) -> torch.Tensor:
        """The tensor ``name`` as the transforms so far left it (no copy; never modify)."""
        owner, attr = _owner(handle.module, name)
        got = self.params.get(param_name_of(handle.module, name))
        if got is not None:
            return got
        t: torch.Tensor | None = owner._parameters.get(attr)
        if t is None:
            t = owner._buffers.get(attr)
        if t is None:
            raise KeyError(f"{handle.name}: no parameter {name!r}")
        return t.detach()

    def set(self, handle: ModelHandle, name: str, value: torch.Tensor) -> None:
        """Store a new tensor for parameter ``name`` (checked against the original's shape)."""
        owner, attr = _owner(handle.module, name)
        orig = owner._parameters.get(attr)
        if orig is None:
            raise KeyError(f"{handle.name}: no parameter {name!r}")
        if tuple(value.shape) != tuple(orig.shape):
            raise ValueError(
                f"{name}: a transform produced shape {list(value.shape)}, "
                f"the parameter has {list(orig.shape)}"
            )
        self.params[param_name_of(handle.module, name)] = value.detach().to(orig.dtype)

    def weight(self, handle: ModelHandle, fqn: str) -> torch.Tensor:
        """Layer ``fqn``'s weight after the transforms."""
        return self.current(handle, handle.layer(fqn).param_name)

    def bias_name(self, handle: ModelHandle, fqn: str) -> str | None:
        """Qualified name of layer ``fqn``'s bias parameter, if it has one."""
        mod_fqn = handle.layer(fqn).module_fqn
        mod = get_module(handle.module, mod_fqn)
        if isinstance(getattr(mod, "bias", None), nn.Parameter):
            return f"{mod_fqn}.bias" if mod_fqn else "bias"
        return None


def _bias_hook(state: Transformed, fqn: str) -> Hook:
    def hook(out: torch.Tensor) -> torch.Tensor:
        b = state.extra_bias[fqn].to(out.dtype)
        shape = [1] * out.dim()
        ch = 1 if out.dim() > 2 and b.numel() == out.shape[1] else out.dim() - 1
        shape[ch] = b.numel()
        return out + b.reshape(shape)

    return hook


@contextmanager
def transformed(handle: ModelHandle, state: Transformed | None) -> Iterator[None]:
    """``handle``'s model with ``state`` in it for the ``with`` block; restored exactly after."""
    if state is None or state.empty:
        yield
        return
    root = handle.module
    swapped: list[tuple[nn.Parameter, torch.Tensor]] = []
    removers: list[Callable[[], None]] = []
    try:
        for name, t in state.params.items():
            owner, attr = _owner(root, name)
            p = owner._parameters[attr]
            assert p is not None
            swapped.append((p, p.data))
            p.data = t
        for fqn, fn in state.pre_hooks:

            def pre(_m: nn.Module, args: tuple[Any, ...], fn: Hook = fn) -> Any:
                if not args or not isinstance(args[0], torch.Tensor):
                    return None
                return (fn(args[0]), *args[1:])

            removers.append(get_module(root, fqn).register_forward_pre_hook(pre).remove)
        posts = list(state.post_hooks)
        for fqn in state.extra_bias:
            posts.append((handle.layer(fqn).module_fqn, _bias_hook(state, fqn)))
        for fqn, fn in posts:

            def post(_m: nn.Module, _a: Any, out: Any, fn: Hook = fn) -> Any:
                return fn(out) if isinstance(out, torch.Tensor) else None

            removers.append(get_module(root, fqn).register_forward_hook(post).remove)
        for fqn in state.identity:

            def skip(_m: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
                return args[0] if args and isinstance(args[0], torch.Tensor) else None

            removers.append(get_module(root, fqn).register_forward_hook(skip).remove)
        yield
    finally:
        for r in reversed(removers):
            r()
        for p, orig in reversed(swapped):
            p.data = orig
