"""Open a ``torch.export`` ``.pt2`` archive without running code from it (unless trusted).

``torch.export.load`` runs code from the archive in several places: it unpickles the sample
inputs with a fallback to ``weights_only=False``, unpickles "pickled" weights and constants
with ``weights_only=False`` and opaque constants with ``pickle.loads``, hands every symbolic
shape expression to ``sympy.sympify`` (which is ``eval``), and compiles the archive's
``guards_code`` strings into a Python function that runs on every call. Untrusted, this module
reads the archive itself:

* every pickle (sample inputs, pickled weights/constants, legacy ``.pt`` weights) is read
  with ``torch.load(weights_only=True)``; torchbind and opaque objects are refused;
* every ``expr_str`` must parse as a small expression language (sympy constructors and
  torch's shape functions, names, numbers, arithmetic) before sympy sees it;
* ``guards_code`` must be empty;
* no string or key may break out of the Python source torch.fx generates (module paths go
  into ``getattr(self, "...")`` unescaped);
* declared sizes (zip entries, tensor metadata) are checked against the load limit;
* the raw weight files are mapped by torch's own non-pickle reader;
* after deserialising, every graph node must call an operator (no arbitrary callables).

Anything else is :class:`TrustRequired` naming the entry, so ``--trust`` can override it.
The checks themselves are in :mod:`quantviz.model.pt2_checks`.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from quantviz.model.errors import ModelLoadError, TrustRequired, brief, weights_only_reason
from quantviz.model.limits import claimed_bytes, too_big
from quantviz.model.pt2_checks import ALLOWED_CALLS, check_expr, check_strings, walk_json

__all__ = ["check_expr", "check_strings", "load_exported_program"]


def _check_model_json(path: Path, entry: str, raw: bytes) -> None:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{path}: {entry}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ModelLoadError(f"{path}: {entry}: not a serialized ExportedProgram")
    if doc.get("guards_code"):
        raise TrustRequired(
            path,
            f"{entry} carries Python guard code ({len(doc['guards_code'])} guard(s)), which "
            "torch compiles and runs on every call",
        )
    why = check_strings(doc)
    if why is not None:
        raise TrustRequired(
            path,
            f"{entry} has a name that would break out of the Python code torch.fx generates "
            f"for the program ({why})",
        )
    for key, value in walk_json(doc):
        if key == "expr_str":
            why = check_expr(value) if isinstance(value, str) else "not a string"
            if why is not None:
                raise TrustRequired(
                    path,
                    f"{entry} has a symbolic shape expression that is not plain arithmetic "
                    f"({why}); torch evaluates those with sympy, i.e. Python eval",
                )


def _weights_only(path: Path, entry: str, data: bytes) -> Any:
    """``torch.load(weights_only=True)`` of one archive entry; a refusal names the entry."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # the restricted unpickler refused a global, or corrupt data
        raise TrustRequired(
            path,
            f"entry {entry} is a pickle that weights-only loading refuses "
            f"({weights_only_reason(exc)})",
        ) from None


def _check_sizes(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"{path}: corrupt or truncated archive ({exc})") from None
    total = sum(i.file_size for i in infos)
    msg = too_big(f"{path}: the archive's {len(infos)} entries", total)
    if msg:
        raise ModelLoadError(msg)
    return [i.filename for i in infos]


def _load_payloads(
    path: Path, reader: Any, model: str, kind: str, *, names: set[str]
) -> dict[str, Any]:
    """The state_dict (``kind='weights'``) or constants of ``model``, pickles weights-only."""
    from torch._export.serde.serialize import (
        deserialize_scalar_type,
        deserialize_size,
        deserialize_storage_offset,
        deserialize_stride,
    )
    from torch.export.pt2_archive import constants as C
    from torch.export.pt2_archive._package import _build_file_map, _load_payload_config

    base = C.WEIGHTS_DIR if kind == "weights" else C.CONSTANTS_DIR
    legacy = f"{base}{model}.pt"
    if legacy in names:  # older archives: one torch.save'd dict
        obj = _weights_only(path, legacy, reader.read_bytes(legacy))
        if not isinstance(obj, dict):
            raise ModelLoadError(f"{path}: {legacy}: expected a dict, got {type(obj).__name__}")
        why = check_strings(list(obj))
        if why is not None:
            raise TrustRequired(
                path, f"{legacy} has a name that would break out of generated code ({why})"
            )
        return obj
    cfg_name = (
        C.WEIGHTS_CONFIG_FILENAME_FORMAT
        if kind == "weights"
        else C.CONSTANTS_CONFIG_FILENAME_FORMAT
    ).format(model)
    if cfg_name not in names:
        raise ModelLoadError(f"{path}: not a torch.export archive ({cfg_name} missing)")
    config = _load_payload_config(reader, cfg_name)
    why = check_strings(list(config.config))
    if why is not None:
        raise TrustRequired(
            path, f"{cfg_name} has a name that would break out of generated code ({why})"
        )
    for fqn, meta in config.config.items():
        pn = meta.path_name
        if kind == "constants" and not pn.startswith(C.TENSOR_CONSTANT_FILENAME_PREFIX):
            what = (
                "a torchbind object"
                if pn.startswith(C.CUSTOM_OBJ_FILENAME_PREFIX)
                else "a pickled Python object"
            )
            raise TrustRequired(path, f"constant {fqn!r} ({base}{pn}) is {what}")
    total = 0
    for meta in config.config.values():
        tm = meta.tensor_meta
        if tm is None:
            continue
        sizes = [getattr(s, "value", 0) for s in tm.sizes]
        if all(isinstance(n, int) for n in sizes):
            itemsize = torch._utils._element_size(deserialize_scalar_type(tm.dtype))
            total += claimed_bytes(sizes, itemsize)
    msg = too_big(f"{path}: the archive's {kind}", total)
    if msg:
        raise ModelLoadError(msg)
    file_map = _build_file_map(reader, config, base)  # raw bytes, no pickle
    out: dict[str, Any] = {}
    for fqn, meta in config.config.items():
        entry = f"{base}{meta.path_name}"
        if meta.use_pickle:
            value = _weights_only(path, entry, reader.read_bytes(entry))
            if not isinstance(value, torch.Tensor):
                raise ModelLoadError(f"{path}: {entry}: holds a {type(value).__name__}")
            out[fqn] = value
            continue
        tm = meta.tensor_meta
        if tm is None:
            raise ModelLoadError(f"{path}: {entry}: no tensor metadata")
        t = torch.as_strided(
            file_map[meta.path_name],
            size=deserialize_size(tm.sizes),
            stride=deserialize_stride(tm.strides),
            storage_offset=deserialize_storage_offset(tm.storage_offset),
        )
        if kind == "weights" and meta.is_param:
            out[fqn] = torch.nn.Parameter(t, requires_grad=tm.requires_grad)
        else:
            out[fqn] = t
    return out


def _check_graph(path: Path, ep: Any) -> None:
    """Every node of every graph calls an operator, never an arbitrary Python callable."""
    ops = (torch._ops.OpOverload, torch._ops.OpOverloadPacket, torch._ops.HigherOrderOperator)
    for gm in ep.graph_module.modules():
        graph = getattr(gm, "graph", None)
        if graph is None:
            continue
        for node in graph.nodes:
            if node.op in ("placeholder", "output", "get_attr"):
                continue
            if node.op == "call_function" and (
                isinstance(node.target, ops) or node.target in ALLOWED_CALLS
            ):
                continue
            raise TrustRequired(
                path,
                f"graph node {node.name!r} calls {node.op} {node.target!r}, not an operator",
            )


def _load_untrusted(path: Path, names: list[str]) -> Any:
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _bytes_to_dataclass
    from torch.export.pt2_archive import constants as C
    from torch.export.pt2_archive._package import PT2ArchiveReader

    with PT2ArchiveReader(str(path)) as reader:
        version = reader.read_string(C.ARCHIVE_VERSION_PATH)
        if version != C.ARCHIVE_VERSION_VALUE:
            raise ModelLoadError(
                f"{path}: archive version {version!r}, this torch reads "
                f"{C.ARCHIVE_VERSION_VALUE!r}; re-export the model with this torch version"
            )
        inner = set(reader.get_file_names())
        model_json = C.MODELS_FILENAME_FORMAT.format("model")
        if model_json not in inner:
            raise ModelLoadError(f"{path}: no {model_json} in the archive")
        raw = reader.read_bytes(model_json)
        _check_model_json(path, model_json, raw)
        sample_name = C.SAMPLE_INPUTS_FILENAME_FORMAT.format("model")
        example: Any = None
        if sample_name in inner:
            data = reader.read_bytes(sample_name)
            if data:
                example = _weights_only(path, sample_name, data)
                if not isinstance(example, tuple) or len(example) != 2:
                    raise ModelLoadError(
                        f"{path}: {sample_name}: expected (args, kwargs), "
                        f"got {type(example).__name__}"
                    )
        state = _load_payloads(path, reader, "model", "weights", names=inner)
        consts = _load_payloads(path, reader, "model", "constants", names=inner)
        serialized = _bytes_to_dataclass(schema.ExportedProgram, raw)
    ep = ExportedProgramDeserializer(None).deserialize(serialized, state, consts, example)
    _check_graph(path, ep)
    return ep


def load_exported_program(path: Path, *, trust: bool) -> Any:
    """The ``torch.export.ExportedProgram`` in ``path``; untrusted, no code from the file runs.

    Raises :class:`TrustRequired` for what cannot be read without running code, and
    :class:`ModelLoadError` for corrupt archives or archives claiming more memory than the
    load limit.
    """
    names = _check_sizes(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if trust:
                return torch.export.load(str(path))
            return _load_untrusted(path, names)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{path}: corrupt torch.export archive ({brief(exc)})") from None
