"""The loaded-model contract shared by loading, capture, eval and the GUI (no Qt)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["LayerInfo", "ModelHandle"]

#: Layer kinds quantviz recognises (by what a layer is, not by its class name).
KINDS = (
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "linear",
    "embedding",
)


@dataclass(frozen=True)
class LayerInfo:
    """One quantizable layer.

    ``fqn`` is the module's fully-qualified name (``features.0``); ``param`` the qualified
    name of its weight parameter (``features.0.weight``); ``macs`` multiply-accumulates per
    sample, measured by a forward pass on the example input (0 for embeddings).
    """

    fqn: str
    kind: str
    weight_shape: tuple[int, ...]
    params: int
    depthwise: bool = False
    macs: int = 0
    bias: bool = False
    class_name: str = ""
    #: qualified name of the weight parameter; "" means ``f"{fqn}.weight"``
    param: str = ""

    @property
    def param_name(self) -> str:
        """Qualified name of the weight parameter (``features.0.weight``)."""
        return self.param or f"{self.fqn}.weight"

    @property
    def module_fqn(self) -> str:
        """Qualified name of the module owning the weight (hooks attach there)."""
        return self.param_name.rpartition(".")[0]

    @property
    def weight_numel(self) -> int:
        n = 1
        for s in self.weight_shape:
            n *= s
        return n


@dataclass
class ModelHandle:
    """A model opened by :func:`quantviz.model.load_model`.

    ``module`` is in eval mode and never modified by quantviz except through
    :mod:`quantviz.eval.apply` (which restores it exactly). ``example_input`` is one batch of
    size 1 with the shape and dtype the model takes.
    """

    source: str
    name: str
    module: nn.Module
    layers: list[LayerInfo]
    example_input: torch.Tensor
    #: default evaluation data source (e.g. ``sample:digits``) for bundled samples
    default_data: str | None = None
    #: number of classes of a classifier, if known
    num_classes: int | None = None
    #: "nn", "torchscript" or "exported"
    flavour: str = "nn"
    meta: dict[str, Any] = field(default_factory=dict)

    # -- lookups ------------------------------------------------------------------------
    def layer(self, fqn: str) -> LayerInfo:
        for lay in self.layers:
            if lay.fqn == fqn:
                return lay
        raise KeyError(f"no quantizable layer named {fqn!r} in {self.name}")

    @property
    def fqns(self) -> list[str]:
        return [lay.fqn for lay in self.layers]

    def weight(self, fqn: str) -> torch.Tensor:
        """The live weight tensor of layer ``fqn`` (no copy; do not modify in place)."""
        from quantviz.model.layers import get_weight

        return get_weight(self, fqn)

    def add_hooks(
        self,
        fqn: str,
        pre: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
        post: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
    ) -> Callable[[], None]:
        """Observe or replace layer ``fqn``'s input (``pre``) and output (``post``).

        A hook returning a tensor replaces the value; returning ``None`` only observes.
        Returns a function that removes the hooks. Raises ``ValueError`` (naming the model
        flavour) where hooks are impossible.
        """
        from quantviz.model.layers import add_hooks

        return add_hooks(self, fqn, pre, post)

    @property
    def total_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    @property
    def float_bytes(self) -> int:
        """Bytes of all parameters and buffers at their own dtype."""
        n = sum(p.numel() * p.element_size() for p in self.module.parameters())
        n += sum(b.numel() * b.element_size() for b in self.module.buffers())
        return n
