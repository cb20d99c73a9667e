"""Open a model from a source string: safe by default.

Sources (see :func:`load_model`):

* ``sample:NAME`` - a bundled sample;
* a TorchScript archive (``torch.jit.save``);
* a ``torch.export`` ExportedProgram (``.pt2``, ``torch.export.save``);
* a ``safetensors`` or ``torch.save`` state_dict plus an architecture
  ``package.module:factory``, written ``weights.safetensors::package.module:factory`` (or
  passed as ``arch=``);
* a whole pickled ``nn.Module`` (``torch.save(model)``) - only with ``trust=True``, because
  unpickling runs arbitrary code. Everything else is read with ``weights_only=True``;
* a Hugging Face checkpoint folder (``config.json`` + ``model.safetensors`` or a sharded
  index), opened offline with ``transformers`` (:mod:`quantviz.model.hf`).
* an ONNX file, run by onnxruntime (:mod:`quantviz.model.onnx_model`).

The kind of a file is recognised by its content, not its extension
(:mod:`quantviz.model.sniff`); each kind is read by :mod:`quantviz.model.formats`
(``.pt2`` by :mod:`quantviz.model.pt2`, architectures by :mod:`quantviz.model.arch`); the
example input comes from :mod:`quantviz.model.inputs`. Every refusal to run code from a file
is :class:`TrustRequired`; sizes are bounded by :mod:`quantviz.model.limits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from quantviz.model.errors import ModelLoadError, TrustRequired
from quantviz.model.formats import load_exported, load_torchscript, load_weights_file
from quantviz.model.handle import ModelHandle
from quantviz.model.inputs import example_input, read_sidecar
from quantviz.model.sniff import detect_kind

__all__ = ["ModelLoadError", "TrustRequired", "detect_kind", "load_model"]

SAMPLE_PREFIX = "sample:"


# -- public entry point ---------------------------------------------------------------------
def load_model(
    source: str,
    *,
    trust: bool = False,
    device: str = "cpu",
    arch: str | None = None,
    input_shape: Sequence[int] | None = None,
    input_dtype: str | torch.dtype | None = None,
) -> ModelHandle:
    """Open ``source`` and return a :class:`ModelHandle` (eval mode, layers discovered).

    ``arch`` (``package.module:factory``) builds the module a state_dict is loaded into; it
    may also be appended to the path as ``path::package.module:factory``. ``input_shape``
    (including the batch dimension, e.g. ``(1, 3, 32, 32)``) and ``input_dtype`` give the
    example input where it cannot be inferred (sample metadata, a ``.json`` sidecar next to
    the file, or an ExportedProgram's example inputs). ``trust=True`` allows unpickling a
    whole ``nn.Module``, which runs arbitrary code from the file.

    Raises :class:`ModelLoadError` (a ``ValueError``) naming the file and the problem.
    """
    dev = _check_device(device)
    if source.startswith(SAMPLE_PREFIX):
        handle = _load_sample(source[len(SAMPLE_PREFIX) :], source)
    else:
        path_str, _, arch_in_source = source.partition("::")
        if arch_in_source and arch and arch_in_source != arch:
            raise ModelLoadError(
                f"{source}: architecture given twice ({arch_in_source!r} and arch={arch!r})"
            )
        handle = _load_file(
            source,
            Path(path_str).expanduser(),
            trust=trust,
            arch=arch or arch_in_source or None,
            input_shape=input_shape,
            input_dtype=input_dtype,
        )
    if dev.type != "cpu":
        handle.module.to(dev)
        handle.example_input = handle.example_input.to(dev)
    handle.meta["device"] = str(dev)
    if handle.flavour != "onnx":  # an ONNX graph's layers are read from the graph
        _discover(handle)
    if handle.flavour == "exported":
        handle.meta["static_batch"] = not _runs_with_batch(handle, 2)
    return handle


def _runs_with_batch(handle: ModelHandle, n: int) -> bool:
    """Whether the model accepts a batch of ``n`` (exported programs may fix the batch size)."""
    x = handle.example_input.expand(n, *handle.example_input.shape[1:])
    try:
        with torch.no_grad():
            handle.module(x)
    except Exception:
        return False
    return True


# -- helpers -----------------------------------------------------------------------------------
def _check_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ModelLoadError(f"device: not a torch device: {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device: cuda requested but CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise ModelLoadError(f"device: must be cpu or cuda, got {device!r}")
    return dev


def _discover(handle: ModelHandle) -> None:
    from quantviz.model.layers import discover_layers

    try:
        handle.layers = discover_layers(handle.module, handle.example_input)
    except ModelLoadError:
        raise
    except Exception as exc:  # the forward pass on the example input failed
        raise ModelLoadError(
            f"{handle.source}: forward pass on the example input of shape "
            f"{tuple(handle.example_input.shape)} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not handle.layers:
        raise ModelLoadError(
            f"{handle.source}: no quantizable layer found (no Conv, ConvTranspose, Linear or "
            "Embedding weight is used in the forward pass)"
        )


def _prepare(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _load_sample(name: str, source: str) -> ModelHandle:
    from quantviz.model.samples import build_sample

    try:
        info, module = build_sample(name)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{source}: {exc}") from None
    except ValueError as exc:
        raise ModelLoadError(f"{source}: {exc}") from None
    return ModelHandle(
        source=source,
        name=name,
        module=_prepare(module),
        layers=[],
        example_input=torch.zeros(info.input_shape),
        default_data=info.default_data,
        num_classes=info.num_classes,
        flavour="nn",
        meta={"description": info.description},
    )


def _load_file(
    source: str,
    path: Path,
    *,
    trust: bool,
    arch: str | None,
    input_shape: Sequence[int] | None,
    input_dtype: str | torch.dtype | None,
) -> ModelHandle:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        from quantviz.model.hf import load_hf

        if arch:
            raise ModelLoadError(
                f"{path}: a Hugging Face checkpoint folder names its own architecture in "
                f"config.json; drop ::{arch} / arch="
            )
        return load_hf(path, source, trust=trust, input_shape=input_shape, input_dtype=input_dtype)
    if not path.is_file():  # a FIFO would block the first read forever
        raise ModelLoadError(f"{path}: not a regular file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    kind = detect_kind(path)
    sidecar = read_sidecar(path)
    if kind == "onnx":
        if arch:
            raise ModelLoadError(
                f"{path}: an ONNX file carries its own graph; drop ::{arch} / arch="
            )
        from quantviz.model.onnx_model import load_onnx

        return load_onnx(
            path, source, sidecar=sidecar, input_shape=input_shape, input_dtype=input_dtype
        )
    example: torch.Tensor | None = None
    meta: dict[str, Any] = {"file_kind": kind}
    if kind == "torchscript":
        module, flavour = load_torchscript(path), "torchscript"
    elif kind == "exported":
        module, example = load_exported(path, trust=trust)
        flavour = "exported"
    else:
        module = load_weights_file(path, kind, trust=trust, arch=arch)
        flavour = "nn"
        ex = getattr(module, "example_input", None)
        if isinstance(ex, torch.Tensor):
            example = ex
    if arch and kind in ("torchscript", "exported"):
        raise ModelLoadError(
            f"{path}: a {kind} file carries its own architecture; drop ::{arch} / arch="
        )
    example = example_input(path, source, example, sidecar, input_shape, input_dtype)
    return ModelHandle(
        source=source,
        name=path.stem,
        module=_prepare(module),
        layers=[],
        example_input=example,
        default_data=sidecar.get("default_data"),
        num_classes=sidecar.get("num_classes"),
        flavour=flavour,
        meta=meta,
    )
