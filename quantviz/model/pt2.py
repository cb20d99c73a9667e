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
* the raw weight files are mapped by torch's own non-pickle reader;
* after deserialising, every graph node must call an operator (no arbitrary callables).

Anything else is :class:`TrustRequired` naming the entry, so ``--trust`` can override it.
"""

from __future__ import annotations

import ast
import io
import json
import math
import operator
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from quantviz.model.errors import ModelLoadError, TrustRequired, brief, weights_only_reason
from quantviz.model.limits import claimed_bytes, too_big

__all__ = ["check_expr", "check_strings", "load_exported_program"]

# sympy constructors and torch.utils._sympy.functions names torch's serializer emits
_EXPR_CALLS = frozenset(
    [
        "Symbol",
        "Integer",
        "Float",
        "Rational",
        "Add",
        "Mul",
        "Pow",
        "Mod",
        "Max",
        "Min",
        "Abs",
        "floor",
        "ceiling",
        "sqrt",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "Equality",
        "Unequality",
        "StrictLessThan",
        "StrictGreaterThan",
        "LessThan",
        "GreaterThan",
        "And",
        "Or",
        "Not",
        "Piecewise",
        "ITE",
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "LShift",
        "RShift",
        "PowByNatural",
        "FloatPow",
        "FloatTrueDiv",
        "IntTrueDiv",
        "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "Identity",
    ]
)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_EXPR_NODES = (
    ast.Expression,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.keyword,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.BoolOp,
    ast.operator,
    ast.unaryop,
    ast.cmpop,
    ast.boolop,
    ast.Tuple,
)
_MAX_EXPR = 10_000
_MAX_INT = 1 << 63  # shapes and strides are int64
_MAX_EXPONENT = 16
_POW_CALLS = frozenset({"Pow", "PowByNatural", "FloatPow"})


def _small_exponent(node: ast.expr) -> bool:
    """An exponent sympy cannot blow up with: a symbol or a constant up to 16 in size.

    (``Integer(10) ** Integer(10 ** 9)`` is computed exactly: a hang, not an expression.)
    """
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and abs(node.value) <= _MAX_EXPONENT
    if isinstance(node, ast.Name):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) >= 1:
        if node.func.id == "Symbol":
            return True
        if node.func.id in ("Integer", "Float", "Rational") and len(node.args) == 1:
            return _small_exponent(node.args[0])
    return False


def check_expr(expr: str) -> str | None:
    """Why ``expr`` is not a plain symbolic-shape expression (None if it is one).

    Allowed: calls of the names in ``_EXPR_CALLS`` with positional and keyword arguments,
    names, numbers and string constants that are names, arithmetic, comparisons and boolean
    operators. No attributes, subscripts, lambdas or dunder names: nothing ``eval`` could use.
    """
    if len(expr) > _MAX_EXPR:
        return f"expression of {len(expr)} characters"
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return f"not an expression: {expr[:80]!r}"
    for node in ast.walk(tree):
        if not isinstance(node, _EXPR_NODES):
            return f"{type(node).__name__} in {expr[:80]!r}"
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Pow)
            and not _small_exponent(node.right)
        ):
            return f"power with a large or computed exponent in {expr[:80]!r}"
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _EXPR_CALLS:
                return f"call of {ast.unparse(node.func)[:40]!r} in {expr[:80]!r}"
            if node.func.id in _POW_CALLS and (
                len(node.args) != 2 or not _small_exponent(node.args[1])
            ):
                return f"power with a large or computed exponent in {expr[:80]!r}"
        elif isinstance(node, ast.Name):
            if not _NAME.match(node.id) or "__" in node.id:
                return f"name {node.id!r} in {expr[:80]!r}"
        elif isinstance(node, ast.keyword):
            if node.arg is None or not _NAME.match(node.arg) or "__" in node.arg:
                return f"keyword {node.arg!r} in {expr[:80]!r}"
        elif isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, str):
                if not _NAME.match(v) or "__" in v:
                    return f"string {v[:40]!r} in {expr[:80]!r}"
            elif isinstance(v, int) and not isinstance(v, bool) and abs(v) >= _MAX_INT:
                return f"integer of {len(str(v))} digits in {expr[:80]!r}"
            elif not (v is None or isinstance(v, (bool, int, float))):
                return f"constant {v!r} in {expr[:80]!r}"
    return None


def _walk_json(obj: Any) -> Iterator[tuple[str, Any]]:
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            for k, v in cur.items():
                yield k, v
                stack.append(v)
        elif isinstance(cur, list):
            stack.extend(cur)


_JSON_TEXT_KEYS = frozenset({"in_spec", "out_spec", "custom"})  # JSON inside a string
_UNSAFE_CHARS = re.compile(r'["\\\x00-\x1f\x7f]')
_UNSAFE_TRACE_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def check_strings(obj: Any, where: str = "") -> str | None:
    """Why a string of a serialized program could break out of fx's generated code, or None.

    torch.fx writes module paths into Python source as ``getattr(self, "<part>")`` without
    escaping, and a node's stack trace and annotations into comments. So no string (or key)
    may hold a double quote, a backslash or a control character; stack traces may hold line
    feeds and tabs but no other control character (a carriage return ends a comment); strings
    that are JSON themselves (tree specs, annotations) are parsed and checked inside.
    """
    stack: list[tuple[str, Any]] = [(where, obj)]
    while stack:
        key, cur = stack.pop()
        if isinstance(cur, dict):
            for k, v in cur.items():
                if isinstance(k, str) and _UNSAFE_CHARS.search(k):
                    return f"key {k[:60]!r}"
                stack.append((str(k), v))
        elif isinstance(cur, list):
            stack.extend((key, v) for v in cur)
        elif isinstance(cur, str):
            if key == "stack_trace":
                bad = _UNSAFE_TRACE_CHARS.search(cur)
            elif key in _JSON_TEXT_KEYS:
                try:
                    stack.append((key + "[json]", json.loads(cur)))
                except (ValueError, RecursionError):
                    return f"{key}: not JSON"
                continue
            else:
                bad = _UNSAFE_CHARS.search(cur)
            if bad:
                return f"{key}: {cur[:60]!r} holds {bad.group()!r}"
    return None


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
    for key, value in _walk_json(doc):
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


_ALLOWED_CALLS: frozenset[Any] = frozenset(
    {
        operator.getitem,
        operator.eq,
        operator.ne,
        operator.le,
        operator.ge,
        operator.lt,
        operator.gt,
        operator.neg,
        operator.pos,
        operator.mul,
        operator.add,
        operator.sub,
        operator.floordiv,
        operator.mod,
        operator.pow,
        operator.truediv,
        operator.and_,
        operator.or_,
        operator.not_,
        operator.abs,
        operator.lshift,
        operator.rshift,
        math.trunc,
        math.ceil,
        math.floor,
        round,
        torch.sym_not,
        torch.sym_int,
        torch.sym_float,
        torch.sym_ite,
        torch.sym_max,
        torch.sym_min,
        torch.sym_sqrt,
        torch._assert,
    }
)


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
                isinstance(node.target, ops) or node.target in _ALLOWED_CALLS
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
