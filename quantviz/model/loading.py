"""Open a model from a source string: safe by default.

Sources (see :func:`load_model`):

* ``sample:NAME`` - a bundled sample;
* a TorchScript archive (``torch.jit.save``);
* a ``torch.export`` ExportedProgram (``.pt2``, ``torch.export.save``);
* a ``safetensors`` or ``torch.save`` state_dict plus an architecture
  ``package.module:factory``, written ``weights.safetensors::package.module:factory`` (or
  passed as ``arch=``);
* a whole pickled ``nn.Module`` (``torch.save(model)``) - only with ``trust=True``, because
  unpickling runs arbitrary code. Everything else is read with ``weights_only=True``.

The kind of a file is recognised by its content, not its extension.
"""

from __future__ import annotations

import json
import pickle
import struct
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from quantviz.model.arch import build_arch
from quantviz.model.errors import ModelLoadError, TrustRequired
from quantviz.model.handle import ModelHandle
from quantviz.model.limits import claimed_bytes, too_big
from quantviz.model.pt2 import load_exported_program

__all__ = ["ModelLoadError", "TrustRequired", "detect_kind", "load_model"]

SAMPLE_PREFIX = "sample:"
_SIDECAR_MAX = 1 << 20
_DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "long": torch.int64,
    "int32": torch.int32,
}


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


def detect_kind(path: Path) -> str:
    """What a model file holds, from its content.

    One of ``torchscript``, ``exported``, ``torch_save`` (zip written by ``torch.save``),
    ``pickle`` (legacy ``torch.save``), ``safetensors``. Raises :class:`ModelLoadError` for
    anything else, including truncated archives.
    """
    with open(path, "rb") as fh:
        head = fh.read(16)
        fh.seek(0, 2)
        size = fh.tell()
    if size == 0:
        raise ModelLoadError(f"{path}: file is empty")
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as exc:
            raise ModelLoadError(f"{path}: corrupt or truncated archive ({exc})") from None
        if any(n.endswith("/models/model.json") or n.endswith("archive_format") for n in names):
            return "exported"
        if any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("/data.pkl") for n in names):
            return "torch_save"
        raise ModelLoadError(
            f"{path}: a zip archive, but not one written by torch.jit.save, torch.export.save "
            "or torch.save"
        )
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 2 <= n <= size - 8:
            return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    raise ModelLoadError(
        f"{path}: not a model file quantviz can read (expected TorchScript, a torch.export .pt2, "
        "safetensors or a torch.save file)"
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
        raise ModelLoadError(f"{path}: is a directory, not a model file")
    kind = detect_kind(path)
    sidecar = _read_sidecar(path)
    example: torch.Tensor | None = None
    meta: dict[str, Any] = {"file_kind": kind}
    if kind == "torchscript":
        module, flavour = _load_torchscript(path), "torchscript"
    elif kind == "exported":
        module, example = _load_exported(path, trust=trust)
        flavour = "exported"
    else:
        module = _load_weights_file(path, kind, trust=trust, arch=arch)
        flavour = "nn"
        ex = getattr(module, "example_input", None)
        if isinstance(ex, torch.Tensor):
            example = ex
    if arch and kind in ("torchscript", "exported"):
        raise ModelLoadError(
            f"{path}: a {kind} file carries its own architecture; drop ::{arch} / arch="
        )
    example = _example_input(path, source, example, sidecar, input_shape, input_dtype)
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


def _read_sidecar(path: Path) -> dict[str, Any]:
    """``model.pt.json`` or ``model.json`` next to the file, if present."""
    for cand in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if cand.is_file() and cand != path:
            size = cand.stat().st_size
            if size > _SIDECAR_MAX:
                raise ModelLoadError(
                    f"{cand}: sidecar JSON of {size:,} bytes; a sidecar is a few lines "
                    f"(limit {_SIDECAR_MAX:,} bytes)"
                )
            try:
                data = json.loads(cand.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError) as exc:
                why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
                raise ModelLoadError(f"{cand}: unreadable sidecar JSON ({why})") from None
            if not isinstance(data, dict):
                raise ModelLoadError(f"{cand}: sidecar must be a JSON object")
            nc = data.get("num_classes")
            if nc is not None and (not isinstance(nc, int) or nc < 1):
                raise ModelLoadError(f"{cand}: num_classes must be a positive integer, got {nc!r}")
            return data
    return {}


def _parse_dtype(where: str, dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).removeprefix("torch.")]
    except KeyError:
        raise ModelLoadError(
            f"{where}: input dtype must be one of {', '.join(sorted(_DTYPES))}, got {dtype!r}"
        ) from None


def _example_input(
    path: Path,
    source: str,
    found: torch.Tensor | None,
    sidecar: Mapping[str, Any],
    input_shape: Sequence[int] | None,
    input_dtype: str | torch.dtype | None,
) -> torch.Tensor:
    shape: Sequence[int] | None = input_shape
    where = "input_shape"
    if shape is None and "input_shape" in sidecar:
        shape, where = sidecar["input_shape"], f"{path}.json: input_shape"
    if shape is None:
        if found is not None:
            return found[:1].clone() if found.dim() > 0 and found.shape[0] > 1 else found
        raise ModelLoadError(
            f"{path}: cannot tell the model's input shape; pass input_shape (CLI "
            '--input-shape, e.g. 1,3,32,32) or put {"input_shape": [1, 3, 32, 32]} in '
            f"{path.name}.json next to the file"
        )
    if (
        isinstance(shape, (str, bytes))
        or not isinstance(shape, Sequence)
        or not shape
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise ModelLoadError(f"{where}: must be a list of positive integers, got {shape!r}")
    dtype = _parse_dtype(where, input_dtype or sidecar.get("input_dtype"))
    one = (1, *tuple(shape)[1:])
    itemsize = torch.empty((), dtype=dtype).element_size()
    msg = too_big(f"{where}: an example input of shape {one} {dtype}", claimed_bytes(one, itemsize))
    if msg:
        raise ModelLoadError(msg)
    return torch.zeros(one, dtype=dtype)


def _load_torchscript(path: Path) -> nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated, but still the format
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(f"{path}: corrupt TorchScript archive ({exc})") from None


def _load_exported(path: Path, *, trust: bool) -> tuple[nn.Module, torch.Tensor | None]:
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
        # run the re-assembled submodules as compiled GraphModules, not the slow fx.Interpreter
        for sub in module.modules():
            if hasattr(sub, "_run_with_interpreter"):
                sub._run_with_interpreter = False
    except Exception:  # fall back to the flat graph module (no per-layer hooks)
        try:
            module = ep.module()
        except Exception as exc:
            raise ModelLoadError(
                f"{path}: the exported program cannot be turned into a module "
                f"({type(exc).__name__}: {exc})"
            ) from None
    return module, example


def _torch_load(path: Path, weights_only: bool) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # a file object, not the path: torch.load dispatches on a ".safetensors" name
        with open(path, "rb") as fh:
            return torch.load(fh, map_location="cpu", weights_only=weights_only)


def _load_weights_file(path: Path, kind: str, *, trust: bool, arch: str | None) -> nn.Module:
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
                    "code when unpickled; save a state_dict / TorchScript / torch.export file "
                    "instead",
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
        raise ModelLoadError(
            f"{path}: holds a state_dict (weights only); give the architecture as "
            f"{path.name}::package.module:factory (or arch=)"
        )
    module = build_arch(path, arch, trust=trust)
    _load_state(path, module, state, arch)
    return module


def _check_zip_claims(path: Path) -> None:
    """A torch.save zip whose members inflate past the load limit is refused before reading."""
    if detect_kind(path) != "torch_save":
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
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
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
