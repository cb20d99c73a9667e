"""A model, its data and its baseline as plain arrays for an object store (Ray's), and back.

Pickling a torch tensor copies its bytes into the pickle stream; a NumPy array is written
out of band (pickle protocol 5), so Ray copies it into shared memory once and a worker reads
it *in place* (zero-copy). :func:`pack` therefore turns every tensor of a
:class:`~quantviz.model.handle.ModelHandle` (the module's parameters and buffers, the example
input), of the :class:`~quantviz.data.EvalData` and of the float baseline into
:class:`PackedTensor` (a flat ``uint8`` array plus dtype and shape), and the module into a
*skeleton*: a copy whose parameters and buffers live on the ``meta`` device (no memory),
made without copying a weight. :func:`unpack` puts the tensors back into the skeleton — tied
weights stay tied, non-persistent buffers are restored, any dtype travels (bfloat16 too).

The tensors a worker gets are views of read-only shared memory: evaluation never writes a
weight in place (:mod:`quantviz.eval.apply` swaps ``.data``), so several worker processes
share one copy of the weights. TorchScript modules (which do not pickle) travel as the bytes
of ``torch.jit.save``, exported programs as those of ``torch.export.save``.
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.handle import ModelHandle

__all__ = ["PackedTensor", "pack", "pack_module", "unpack", "unpack_module"]


@dataclass(frozen=True)
class PackedTensor:
    """A CPU tensor's bytes (``data``: 1-D uint8), ``dtype`` name and ``shape``."""

    data: np.ndarray
    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def of(cls, t: torch.Tensor) -> PackedTensor:
        t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        flat = t.contiguous().reshape(-1)
        return cls(
            flat.view(torch.uint8).numpy(), str(t.dtype).removeprefix("torch."), tuple(t.shape)
        )

    def tensor(self) -> torch.Tensor:
        """The tensor, sharing the array's memory (read-only memory stays read-only)."""
        dtype = getattr(torch, self.dtype)
        if self.data.size == 0:
            return torch.empty(self.shape, dtype=dtype)
        with warnings.catch_warnings():  # an array in Ray's shared memory is not writable
            warnings.simplefilter("ignore", UserWarning)
            raw = torch.from_numpy(self.data)
        return raw.view(dtype).reshape(self.shape)


def _packed(t: Any) -> Any:
    return PackedTensor.of(t) if isinstance(t, torch.Tensor) else t


def _unpacked(t: Any) -> Any:
    return t.tensor() if isinstance(t, PackedTensor) else t


# -- modules ---------------------------------------------------------------------------------
def pack_module(module: nn.Module) -> tuple[nn.Module, dict[str, PackedTensor]]:
    """``(skeleton, tensors)``: ``module`` with meta parameters and buffers, and their values
    by qualified name (each shared tensor once). ``module`` is not changed."""
    memo: dict[int, Any] = {}
    tensors: dict[str, PackedTensor] = {}
    seen: set[int] = set()
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) not in seen:
            seen.add(id(p))
            tensors[name] = PackedTensor.of(p)
            memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad)
    for name, b in module.named_buffers(remove_duplicate=False):
        if id(b) not in seen:
            seen.add(id(b))
            tensors[name] = PackedTensor.of(b)
            memo[id(b)] = torch.empty_like(b, device="meta")
    skeleton = copy.deepcopy(module, memo)
    return skeleton, tensors


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return (module.get_submodule(path) if path else module), leaf


def unpack_module(skeleton: nn.Module, tensors: dict[str, PackedTensor]) -> nn.Module:
    """Fill ``skeleton`` (from :func:`pack_module`) with ``tensors``; returns it."""
    new: dict[int, Any] = {}
    for name, packed in tensors.items():
        owner, leaf = _owner(skeleton, name)
        old = owner._parameters.get(leaf)
        if old is not None:
            new[id(old)] = nn.Parameter(packed.tensor(), requires_grad=False)
        else:
            new[id(owner._buffers[leaf])] = packed.tensor()
    for sub in skeleton.modules():  # every place a tensor is used (tied weights too)
        for k, v in list(sub._parameters.items()):
            if v is not None and id(v) in new:
                sub._parameters[k] = new[id(v)]
        for k, b in list(sub._buffers.items()):
            if b is not None and id(b) in new:
                sub._buffers[k] = new[id(b)]
    return skeleton


# -- a model, its data and baseline --------------------------------------------------------
def _pack_handle(handle: ModelHandle) -> dict[str, Any]:
    out: dict[str, Any] = {
        "handle": replace(handle, module=nn.Module(), example_input=torch.empty(0))
    }
    out["example_input"] = PackedTensor.of(handle.example_input)
    buf = io.BytesIO()
    if handle.flavour == "torchscript":
        torch.jit.save(handle.module, buf)
        out["script"] = buf.getvalue()
    elif handle.flavour == "exported":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.export(handle.module, (handle.example_input,))
        torch.export.save(ep, buf)
        out["pt2"] = buf.getvalue()
    else:
        try:
            out["skeleton"], out["tensors"] = pack_module(handle.module)
        except Exception:  # a module that does not deep-copy: it travels pickled as it is
            out["module"] = handle.module
    return out


def _unpack_handle(d: dict[str, Any]) -> ModelHandle:
    module: nn.Module
    if "script" in d:
        module = torch.jit.load(io.BytesIO(d["script"]), map_location="cpu")
    elif "pt2" in d:  # bytes this process's driver wrote: trusted
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.load(io.BytesIO(d["pt2"]))
            try:
                module = torch.export.unflatten(ep)
                for sub in module.modules():  # as quantviz.model.formats.load_exported
                    if hasattr(sub, "_run_with_interpreter"):
                        setattr(sub, "_run_with_interpreter", False)  # noqa: B010
            except Exception:
                module = ep.module()
    elif "module" in d:
        module = d["module"]
    else:
        module = unpack_module(d["skeleton"], d["tensors"])
    return replace(d["handle"], module=module.eval(), example_input=d["example_input"].tensor())


def pack(handle: ModelHandle, data: EvalData, baseline: Any = None) -> dict[str, Any]:
    """``handle``, ``data`` and ``baseline`` (a :class:`~quantviz.eval.results.Baseline` or
    None) as a picklable dict whose tensors are arrays (see the module doc)."""
    packed_data = {k: _packed(getattr(data, k)) for k in ("name", "x", "y", "calib_x")}
    b = None
    if baseline is not None:
        b = {
            "metric": baseline.metric,
            "value": baseline.value,
            "outputs": PackedTensor.of(baseline.outputs),
            "seconds": baseline.seconds,
            "top5": baseline.top5,
            "batch_limit": baseline.batch_limit,
        }
    return {"model": _pack_handle(handle), "data": packed_data, "baseline": b}


def unpack(payload: dict[str, Any]) -> tuple[ModelHandle, EvalData, Any]:
    """``(handle, data, baseline)`` from :func:`pack`'s dict (the baseline belongs to the
    returned module and inputs: ``baseline.matches(handle.module, data.x)``)."""
    from quantviz.data import EvalData
    from quantviz.eval.results import Baseline

    handle = _unpack_handle(payload["model"])
    data = EvalData(**{k: _unpacked(v) for k, v in payload["data"].items()})
    b = payload["baseline"]
    baseline = None
    if b is not None:
        baseline = Baseline.build(
            handle.module,
            data.x,
            b["metric"],
            b["value"],
            b["outputs"].tensor(),
            b["seconds"],
            b["top5"],
            batch_limit=b["batch_limit"],
        )
    return handle, data, baseline
