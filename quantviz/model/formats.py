"""Reading each kind of model file into an ``nn.Module`` (safe unless trusted).

TorchScript through ``torch.jit.load``; ``.pt2`` through :mod:`quantviz.model.pt2`;
safetensors and ``torch.save`` state dicts (``weights_only=True``) loaded into the module an
architecture builds (:mod:`quantviz.model.arch`); whole pickled modules only with trust.
"""

from __future__ import annotations

import logging
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from quantviz.model.arch import build_arch
from quantviz.model.errors import (
    ArchitectureRequired,
    ModelLoadError,
    TrustRequired,
    weights_only_reason,
)
from quantviz.model.limits import too_big
from quantviz.model.pt2 import load_exported_program
from quantviz.model.sniff import detect_kind

__all__ = ["load_exported", "load_torchscript", "load_weights_file"]

log = logging.getLogger("quantviz.model")


def load_torchscript(path: Path) -> nn.Module:
    _check_zip_claims(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated, but still the format
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(f"{path}: corrupt TorchScript archive ({exc})") from None


def load_exported(path: Path, *, trust: bool) -> tuple[nn.Module, torch.Tensor | None]:
    ep = load_exported_program(path, trust=trust)
    example = None
    if ep.example_inputs is not None:
        args, kwargs = ep.example_inputs
        if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
            example = args[0]
        elif args or kwargs:
            raise ModelLoadError(
                f"{path}: the exported program takes {len(args)} positional and {len(kwargs)} "
                "keyword inputs; quantviz handles models with one tensor input"
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.export.unflatten(ep)
        _compile_unflattened(module)
    except Exception:  # fall back to the flat graph module (no per-layer hooks)
        try:
            module = ep.module()
        except Exception as exc:
            raise ModelLoadError(
                f"{path}: the exported program cannot be turned into a module "
                f"({type(exc).__name__}: {exc})"
            ) from None
    return module, example


def _compile_unflattened(module: nn.Module) -> None:
    """Run re-assembled submodules as compiled GraphModules, not the slow fx.Interpreter.

    A module called more than once in one parent (EfficientNet's ``_swish``) is unflattened
    into call sites that the generated code names ``_swish@1`` and only the interpreter
    resolves; a submodule whose graph calls one target twice keeps the interpreter (its
    children are still compiled).
    """
    for sub in module.modules():
        if not hasattr(sub, "_run_with_interpreter"):
            continue
        graph = getattr(sub, "graph", None)
        targets = [str(n.target) for n in graph.nodes if n.op == "call_module"] if graph else []
        if len(set(targets)) == len(targets) and all(_resolves(sub, t) for t in targets):
            setattr(sub, "_run_with_interpreter", False)  # noqa: B010


def _resolves(module: nn.Module, target: str) -> bool:
    obj: Any = module
    for part in target.split("."):
        if not part.isidentifier() or not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def _torch_load(path: Path, weights_only: bool) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # a file object, not the path: torch.load dispatches on a ".safetensors" name
        with open(path, "rb") as fh:
            return torch.load(fh, map_location="cpu", weights_only=weights_only)


def load_weights_file(path: Path, kind: str, *, trust: bool, arch: str | None) -> nn.Module:
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"{path}: corrupt or truncated safetensors file ({exc})") from None
    else:
        _check_zip_claims(path)
        try:
            obj = _torch_load(path, weights_only=True)
        except pickle.UnpicklingError as exc:
            if "weights_only" not in str(exc) and "Unsupported global" not in str(exc):
                raise ModelLoadError(
                    f"{path}: corrupt or truncated torch.save file ({exc})"
                ) from None
            if not trust:
                raise TrustRequired(
                    path,
                    "holds pickled Python objects (e.g. a whole nn.Module), which run arbitrary "
                    f"code when unpickled ({weights_only_reason(exc)}); save a state_dict / "
                    "TorchScript / torch.export file instead",
                ) from None
            try:
                obj = _torch_load(path, weights_only=False)
            except Exception as exc2:
                raise ModelLoadError(f"{path}: could not unpickle ({exc2})") from None
        except MemoryError as exc:
            raise ModelLoadError(f"{path}: claims more memory than is available ({exc})") from None
        except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
            if "allocate" in str(exc):
                raise ModelLoadError(
                    f"{path}: claims more memory than is available ({exc})"
                ) from None
            raise ModelLoadError(f"{path}: corrupt or truncated torch.save file ({exc})") from None
    if isinstance(obj, torch.jit.ScriptModule):
        return obj
    if isinstance(obj, nn.Module):
        if arch:
            raise ModelLoadError(f"{path}: holds a whole nn.Module; drop the architecture {arch}")
        return obj
    state = _state_dict_of(path, obj)
    if not arch:
        raise ArchitectureRequired(path)
    module = build_arch(path, arch, trust=trust)
    _load_state(path, module, state, arch)
    return module


def _check_zip_claims(path: Path) -> None:
    """A zip (torch.save, TorchScript) whose members inflate past the load limit is refused
    before reading: torch reads deflated members too."""
    if detect_kind(path) not in ("torch_save", "torchscript"):
        return
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    msg = too_big(f"{path}: its {len(infos)} zip member(s)", sum(i.file_size for i in infos))
    if msg:
        raise ModelLoadError(msg)


def _state_dict_of(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                obj = inner
                break
        if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            return dict(obj)
    raise ModelLoadError(
        f"{path}: holds a {type(obj).__name__}, not a model or a state_dict of tensors"
    )


def _load_state(path: Path, module: nn.Module, state: dict[str, torch.Tensor], arch: str) -> None:
    """Fill ``module`` with ``state``. Missing, unexpected or mis-shaped weights are an error
    naming them; entries that are buffers, not weights - a buffer ``arch`` registers as
    non-persistent (``embeddings.position_ids`` in checkpoints saved by older transformers)
    or any integer tensor the module does not hold - are skipped with a warning listing
    them (``quantviz.model`` logger), as transformers does."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    ignored = [
        k
        for k in unexpected
        if k not in params
        and (k in buffers or not (state[k].is_floating_point() or state[k].is_complex()))
    ]
    if ignored:
        log.warning(
            "%s: ignored %d buffer(s) of the file that %s does not keep in its state_dict: %s",
            path,
            len(ignored),
            arch,
            ", ".join(ignored[:8]) + (", ..." if len(ignored) > 8 else ""),
        )
        state = {k: v for k, v in state.items() if k not in ignored}
        unexpected = [k for k in unexpected if k not in ignored]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:4])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:4])})")
        raise ModelLoadError(f"{path}: state_dict keys do not match {arch}: " + "; ".join(parts))
    bad = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise ModelLoadError(
            f"{path}: state_dict shapes do not match {arch} (file vs model): " + ", ".join(bad[:4])
        )
    module.load_state_dict(state)
