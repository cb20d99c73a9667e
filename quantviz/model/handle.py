"""The loaded-model contract shared by loading, capture, eval and the GUI (no Qt)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["LayerInfo", "ModelHandle", "add_hooks", "get_weight"]

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

    ``weight_shape`` is the weight *as quantized*: output channels on axis 0, the layout of
    ``nn.Linear`` and ``nn.Conv*``. ``channel_axis`` is the axis of the *stored* parameter
    that holds the output channels: 1 for GPT-2's ``Conv1D`` (``transformers``), whose
    weight is stored ``[in, out]``; then ``weight_shape`` is the stored shape transposed and
    :meth:`to_quant` / :meth:`to_stored` turn one layout into the other (a transposed view).
    Every quantizer, granularity, SQNR, histogram and export reads the weight as quantized
    (:meth:`ModelHandle.quant_weight`), so per-channel means per output feature and groups
    run along the input features, as for ``nn.Linear``. ``tied`` names the other parameters
    that are this very weight (an ``lm_head`` tied to the token embedding): the layer is
    listed once, counted once, and quantizing it quantizes them.
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
    #: axis of the stored weight holding the output channels: 1 for a ConvTranspose kernel
    #: ``[in, out/g, k...]`` (quantized as stored) and for a 2-D weight stored ``[in, out]``
    #: (GPT-2's Conv1D: quantized transposed, see above)
    channel_axis: int = 0
    #: qualified names of other parameters sharing this weight (tied weights)
    tied: tuple[str, ...] = ()

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """Shape of the parameter as the module stores it."""
        if self.channel_axis == 1 and len(self.weight_shape) == 2:
            return (self.weight_shape[1], self.weight_shape[0])
        return self.weight_shape

    def to_quant(self, w: torch.Tensor) -> torch.Tensor:
        """The stored weight ``w`` in the layout quantization reads (a view, no copy)."""
        return w.t() if self.channel_axis == 1 and w.dim() == 2 else w

    def to_stored(self, w: torch.Tensor) -> torch.Tensor:
        """A weight in the quantized layout back in the stored layout (a view, no copy)."""
        return w.t() if self.channel_axis == 1 and w.dim() == 2 else w

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
    #: "nn", "torchscript", "exported" or "onnx" (an onnxruntime graph)
    flavour: str = "nn"
    meta: dict[str, Any] = field(default_factory=dict)
    #: what the output is: "" (unknown: a classifier or anything else), or for Hugging Face
    #: models "causal_lm", "masked_lm", "sequence_classification", "token_classification",
    #: "question_answering", "seq2seq_lm" or "base" (hidden states)
    task: str = ""
    #: the ``tokenizer.json`` next to a Hugging Face checkpoint, if there is one
    tokenizer_path: str | None = None

    @property
    def is_causal_lm(self) -> bool:
        """A language model predicting the next token (logits ``[batch, tokens, vocab]``)."""
        return self.task == "causal_lm"

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
        return get_weight(self, fqn)

    def quant_weight(self, fqn: str) -> torch.Tensor:
        """Layer ``fqn``'s live weight as quantization reads it: output channels on axis 0
        (a transposed view of a ``Conv1D`` weight stored ``[in, out]``; see
        :class:`LayerInfo`). Its shape is ``layer(fqn).weight_shape``."""
        return self.layer(fqn).to_quant(get_weight(self, fqn))

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


# -- weight and activation access (ModelHandle.weight / .add_hooks) ----------------------
def _direct_params(mod: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in mod.named_parameters(recurse=False) if p is not None}


def _submodule(module: nn.Module, fqn: str) -> nn.Module:
    sub = module
    for part in [p for p in fqn.split(".") if p]:
        try:
            sub = getattr(sub, part)
        except AttributeError:
            raise KeyError(f"no submodule {fqn!r}") from None
    return sub


def get_weight(handle: ModelHandle, fqn: str) -> torch.Tensor:
    """The live weight ``Parameter`` of layer ``fqn`` (no copy).

    Replacing its ``.data`` changes the model's output, for every flavour.
    """
    lay = handle.layer(fqn)
    mod_fqn, _, pname = lay.param_name.rpartition(".")
    mod = _submodule(handle.module, mod_fqn)
    params = _direct_params(mod)
    if pname not in params:
        raise KeyError(f"layer {fqn!r} of {handle.name} has no parameter {pname!r}")
    return params[pname]


def add_hooks(
    handle: ModelHandle,
    fqn: str,
    pre: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
    post: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
) -> Callable[[], None]:
    """Attach an input (``pre``) and/or output (``post``) hook to layer ``fqn``.

    A hook returning a tensor replaces the value; ``None`` only observes. Returns a function
    removing both hooks. ``ValueError`` for TorchScript models (a ScriptModule cannot take
    hooks after scripting) and for exported programs that could not be unflattened.
    """
    lay = handle.layer(fqn)
    if handle.flavour == "onnx":  # the graph runs in onnxruntime: see model/onnx_model.py
        return handle.module.add_hooks(fqn, pre, post)  # type: ignore[operator]
    if handle.flavour == "torchscript":
        raise ValueError(
            f"{handle.name}: layer {fqn!r}: activation hooks are not possible on a TorchScript "
            "model; save it as a torch.export .pt2 or a state_dict + architecture instead"
        )
    mod = _submodule(handle.module, lay.module_fqn)
    if handle.flavour == "exported" and (mod is handle.module or _is_flat_graph(handle.module)):
        raise ValueError(
            f"{handle.name}: layer {fqn!r}: this exported program could not be unflattened "
            "into submodules, so its activations cannot be hooked"
        )
    removers = []
    if pre is not None:

        def _pre(_mod: nn.Module, args: tuple) -> tuple | None:
            if not args or not isinstance(args[0], torch.Tensor):
                return None
            new = pre(args[0])
            return None if new is None else (new, *args[1:])

        removers.append(mod.register_forward_pre_hook(_pre))
    if post is not None:

        def _post(_mod: nn.Module, _args: tuple, out: Any) -> Any:
            if not isinstance(out, torch.Tensor):
                return None
            return post(out)

        removers.append(mod.register_forward_hook(_post))

    def remove() -> None:
        for r in removers:
            r.remove()
        removers.clear()

    return remove


def _is_flat_graph(module: nn.Module) -> bool:
    return isinstance(module, torch.fx.GraphModule)
