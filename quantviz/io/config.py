"""Reading and writing ``ModelConfig`` as JSON or YAML (same content, versioned).

The layout (version 2)::

    {
      "format": "quantviz-config", "version": 2,
      "model": "sample:digits_cnn",                      # optional, informational
      "default": {"weight": {"bits": 8, "granularity": "per_channel"}, "activation": null},
      "layers": {                                        # ordered: the last match wins
        "conv1": {"weight": {"bits": 4}},                # 4-bit, per_channel (inherited)
        "fc*":   {"weight": null},                       # keep the weights of fc* float
        "head":  null                                    # keep head float (both tensors)
      }
    }

Rules:

- A QuantSpec is a mapping of its fields; ``null`` keeps the tensor float. In ``default``
  omitted fields take the ``QuantSpec`` defaults (``{}`` is 8-bit uniform symmetric
  per-tensor min/max).
- ``default``: an omitted ``weight`` is ``QuantSpec()`` and an omitted ``activation`` is
  ``null`` (the ``LayerConfig`` defaults). Writers always write both.
- ``layers``: keys are a layer's fully-qualified name, an ``fnmatch`` glob or ``re:<regex>``
  (matched against the whole name), applied in file order (the last matching key wins).
  **A layer entry reads as "the default, except ..."**: an omitted ``weight`` /
  ``activation`` key is the default's value for that tensor, and in a given spec every
  omitted field is the default's field for that tensor (``{"weight": {"bits": 4}}`` under
  a per-channel default is 4-bit per-channel; ``{"weight": {}}`` is the default's weight
  spec). Where the default keeps that tensor float (``null``), omitted
  fields take the ``QuantSpec`` defaults. ``bits`` is never inherited by a fixed-width
  format (``fp8_*``, ``fp4_e2m1``, ``nf4``: their width). An entry that is ``null`` keeps
  the layer float (weight and activation ``null``).
- Writers write the minimal entry: a key is omitted where it equals the default's value,
  and a spec holds only the fields that differ from the default's spec, so a round trip is
  exact.
- Unknown fields, wrong types, empty strings and out-of-range values raise
  :class:`ConfigError` (a ``ValueError``) naming the field path, prefixed with the file name
  when read from a file: ``cfg.yaml: layers.conv1.weight.bits: must be 1..16, got 0``.
  ``bits`` given for a fixed-width format must equal its width (``nf4`` with ``bits: 4`` is
  fine, ``fp8_e4m3`` with ``bits: 4`` is refused).
- Parsing is bounded: files over :data:`MAX_FILE_BYTES` (16 MB), documents nested deeper
  than :data:`MAX_DEPTH` and YAML whose aliases expand to more than :data:`MAX_NODES` nodes
  (a "billion laughs") or refer to themselves are refused before anything is built.
- ``version`` newer than :data:`CONFIG_VERSION` is refused; older versions are upgraded by
  the functions in :data:`MIGRATIONS`, one version step at a time.

Version 1 differs from version 2 only in a layer entry's specs: their omitted fields took
the ``QuantSpec`` defaults, not the default's. The migration writes those fields explicitly
wherever the default's spec differs, so an old file keeps its meaning. Version 0 (a
pre-release layout) stored overrides as a list of ``[pattern, entry]`` pairs under
``"overrides"`` instead of the ``"layers"`` mapping.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from quantviz.core.spec import (
    CALIBRATIONS,
    FIXED_WIDTH,
    GRANULARITIES,
    QUANTIZERS,
    LayerConfig,
    ModelConfig,
    QuantSpec,
)
from quantviz.io.atomic import atomic_write_bytes

__all__ = [
    "CONFIG_FORMAT",
    "CONFIG_VERSION",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "MIGRATIONS",
    "ConfigError",
    "config_from_dict",
    "config_from_text",
    "config_to_dict",
    "config_to_text",
    "format_for_path",
    "load_config",
    "parse_json_bounded",
    "read_text_bounded",
    "save_config",
]

CONFIG_FORMAT = "quantviz-config"
CONFIG_VERSION = 2

#: Config and session files larger than this are refused before they are read.
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Deepest nesting of mappings / lists accepted in a config or session document.
MAX_DEPTH = 100
#: Most nodes a YAML document may expand to once its aliases are followed.
MAX_NODES = 1_000_000

_TOP_KEYS = ("format", "version", "model", "default", "layers")
_ENTRY_KEYS = ("weight", "activation")
_SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


class ConfigError(ValueError):
    """A config that cannot be read: names the file, the field path and the problem.

    ``str(err)`` is ``"<file>[, line L, column C]: <path>: <detail>"`` with the parts that
    are known. ``path`` is the dotted field path (``layers.conv1.weight.bits``, ``""`` for the
    whole document), ``file`` the file name or source label, ``line`` a 1-based line number
    where the parser reported one.
    """

    def __init__(
        self,
        detail: str,
        *,
        path: str = "",
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.detail = detail
        self.path = path
        self.file = file
        self.line = line
        self.column = column
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        if self.file:
            where = self.file
            if self.line is not None:
                where += f", line {self.line}"
                if self.column is not None:
                    where += f", column {self.column}"
            parts.append(where)
        if self.path:
            parts.append(self.path)
        parts.append(self.detail)
        return ": ".join(parts)

    def with_file(self, file: str | None) -> ConfigError:
        """The same error attributed to ``file``."""
        return ConfigError(
            self.detail, path=self.path, file=file, line=self.line, column=self.column
        )


def _join(base: str, key: object) -> str:
    return f"{base}.{key}" if base else str(key)


def _type_name(v: object) -> str:
    if v is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(v), type(v).__name__)


# -- to dict ---------------------------------------------------------------------------------
_SPEC_FIELDS = tuple(QuantSpec.__dataclass_fields__)
_QUANTSPEC_DEFAULT = QuantSpec()


def _spec_to_obj(spec: QuantSpec | None, base: QuantSpec | None = None) -> dict[str, Any] | None:
    """``spec`` as the fields that differ from ``base`` (``None``: the QuantSpec defaults).

    ``bits`` of a fixed-width format is never written: the reader sets it to the width.
    """
    if spec is None:
        return None
    ref = _QUANTSPEC_DEFAULT if base is None else base
    out = {f: getattr(spec, f) for f in _SPEC_FIELDS if getattr(spec, f) != getattr(ref, f)}
    if spec.quantizer in FIXED_WIDTH:
        out.pop("bits", None)
    return out


def _writable_model(model: str | None) -> str | None:
    """A blank ``model`` label is written as ``null`` (readers refuse blank strings)."""
    return model if model is not None and model.strip() else None


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """The version-2 document of ``cfg`` (plain dicts/lists/scalars, ready for JSON/YAML).

    The default's specs are written with their fields that differ from the QuantSpec
    defaults; a layer entry omits ``weight``/``activation`` where it equals the default's
    and writes only the fields that differ from the default's spec for that tensor (see the
    module docstring).
    """
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"config_to_dict needs a ModelConfig, got {type(cfg).__name__}")
    default = cfg.default
    layers: dict[str, Any] = {}
    for key, lc in cfg.overrides:
        entry: dict[str, Any] = {}
        if lc.weight != default.weight:
            entry["weight"] = _spec_to_obj(lc.weight, default.weight)
        if lc.activation != default.activation:
            entry["activation"] = _spec_to_obj(lc.activation, default.activation)
        layers[key] = entry
    return {
        "format": CONFIG_FORMAT,
        "version": CONFIG_VERSION,
        "model": _writable_model(cfg.model),
        "default": {
            "weight": _spec_to_obj(default.weight),
            "activation": _spec_to_obj(default.activation),
        },
        "layers": layers,
    }


# -- from dict -------------------------------------------------------------------------------
def _short_repr(v: object, limit: int = 60) -> str:
    """``repr(v)`` cut to ``limit`` characters (error messages never echo a huge value)."""
    if isinstance(v, Mapping | list | tuple | set | frozenset):
        return f"<{_type_name(v)}>"
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


_FIELD_KINDS = {
    "bits": "an integer",
    "quantizer": f"one of {', '.join(QUANTIZERS)}",
    "symmetric": "true or false",
    "restricted_range": "true or false",
    "granularity": f"one of {', '.join(GRANULARITIES)}",
    "axis": "an integer",
    "group_size": "an integer",
    "calibration": f"one of {', '.join(CALIBRATIONS)}",
    "percentile": "a number",
    "dynamic": "true or false",
}


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _spec_from_obj(
    obj: object, path: str, base: QuantSpec | None = None, base_path: str = ""
) -> QuantSpec | None:
    """A spec mapping; its omitted fields are ``base``'s (``None``: the QuantSpec defaults).

    ``base_path`` names where ``base`` comes from, for messages about inherited values.
    """
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise ConfigError(
            f"must be a mapping of QuantSpec fields or null, got {_type_name(obj)}", path=path
        )
    for k in obj:
        if k not in _SPEC_FIELDS:
            raise ConfigError(
                f"unknown field (known: {', '.join(_SPEC_FIELDS)})",
                path=_join(path, _short_repr(k) if not isinstance(k, str) else k),
            )
    for k, v in obj.items():
        if isinstance(v, Mapping | list | tuple | set | frozenset):
            raise ConfigError(
                f"must be {_FIELD_KINDS[k]}, got {_type_name(v)}", path=_join(path, k)
            )
        if v == "" and k in ("quantizer", "granularity", "calibration"):
            raise ConfigError(f"must not be empty; must be {_FIELD_KINDS[k]}", path=_join(path, k))
    merged: dict[str, Any] = {}
    if base is not None:
        merged = {f: getattr(base, f) for f in _SPEC_FIELDS}
    merged.update(obj)
    quantizer = merged.get("quantizer", _QUANTSPEC_DEFAULT.quantizer)
    if "bits" not in obj and isinstance(quantizer, str) and quantizer in FIXED_WIDTH:
        merged["bits"] = FIXED_WIDTH[quantizer]  # a fixed width is never inherited
    try:
        spec = QuantSpec.from_dict(merged)
    except (ValueError, TypeError) as e:
        field, sep, detail = str(e).partition(": ")
        detail = _clip(detail)
        if sep and field in _SPEC_FIELDS:
            if base is not None and field not in obj:
                detail += (
                    f" ({field}: {_short_repr(merged[field])} is inherited from {base_path}; "
                    "give it here to change it)"
                )
            raise ConfigError(detail, path=_join(path, field)) from None
        raise ConfigError(_clip(str(e)), path=path) from None
    given_bits = obj.get("bits")
    if spec.quantizer in FIXED_WIDTH and given_bits is not None and given_bits != spec.bits:
        raise ConfigError(
            f"{spec.quantizer} has a fixed width of {spec.bits} bits, "
            f"got {_short_repr(given_bits)}",
            path=_join(path, "bits"),
        )
    return spec


def _check_keys(obj: Mapping[Any, Any], known: tuple[str, ...], path: str) -> None:
    for k in obj:
        if k not in known:
            raise ConfigError(f"unknown field (known: {', '.join(known)})", path=_join(path, k))


def _entry_from_obj(obj: object, path: str, default: LayerConfig | None) -> LayerConfig:
    """A ``default`` block (``default=None``) or a layer entry inheriting from ``default``.

    A layer entry that is ``null`` keeps the layer float; its specs' omitted fields are the
    default's (see the module docstring).
    """
    if obj is None and default is not None:
        return LayerConfig(weight=None, activation=None)
    if not isinstance(obj, Mapping):
        raise ConfigError(
            'must be a mapping with "weight" and/or "activation", got '
            f'{_type_name(obj)} (use {{"weight": null, "activation": null}} for float)',
            path=path,
        )
    _check_keys(obj, _ENTRY_KEYS, path)
    base = default if default is not None else LayerConfig()
    specs: dict[str, QuantSpec | None] = {}
    for tensor in _ENTRY_KEYS:
        inherited = getattr(base, tensor)
        if tensor not in obj:
            specs[tensor] = inherited
        elif default is None:
            specs[tensor] = _spec_from_obj(obj[tensor], _join(path, tensor))
        else:
            specs[tensor] = _spec_from_obj(
                obj[tensor], _join(path, tensor), inherited, f"default.{tensor}"
            )
    return LayerConfig(weight=specs["weight"], activation=specs["activation"])


def _check_version(doc: Mapping[Any, Any]) -> int:
    if "format" not in doc:
        raise ConfigError(
            f'missing; a quantviz config has "format": "{CONFIG_FORMAT}"', path="format"
        )
    if doc["format"] != CONFIG_FORMAT:
        raise ConfigError(
            f"must be {CONFIG_FORMAT!r}, got {_short_repr(doc['format'])} "
            "(not a quantviz config file?)",
            path="format",
        )
    if "version" not in doc:
        raise ConfigError(f"missing; the current version is {CONFIG_VERSION}", path="version")
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"must be an integer, got {_short_repr(version)}", path="version")
    if version > CONFIG_VERSION:
        raise ConfigError(
            f"written by a newer quantviz (version {version}); this one reads up to "
            f"{CONFIG_VERSION}. Upgrade quantviz to read it.",
            path="version",
        )
    if version < 0 or (version < CONFIG_VERSION and version not in MIGRATIONS):
        raise ConfigError(f"{version} is not a known {CONFIG_FORMAT} version", path="version")
    return version


def _migrate_0_to_1(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 0 stored overrides as ``"overrides": [[pattern, entry], ...]``."""
    out = {k: v for k, v in doc.items() if k != "overrides"}
    if "layers" in doc:
        raise ConfigError('unknown field in version 0 (it uses "overrides")', path="layers")
    pairs = doc.get("overrides", [])
    if not isinstance(pairs, list):
        raise ConfigError(
            f"must be a list of [pattern, entry] pairs, got {_type_name(pairs)}", path="overrides"
        )
    layers: dict[str, Any] = {}
    for i, pair in enumerate(pairs):
        p = f"overrides[{i}]"
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ConfigError(f"must be a [pattern, entry] pair, got {_short_repr(pair)}", path=p)
        key, entry = pair
        if not isinstance(key, str) or not key:
            raise ConfigError(f"pattern must be a non-empty string, got {_short_repr(key)}", path=p)
        if key in layers:
            raise ConfigError(f"{key!r} appears twice", path=p)
        layers[key] = entry
    out["layers"] = layers
    out["version"] = 1
    return out


def _migrate_1_to_2(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 1: a layer entry's omitted spec fields were the QuantSpec defaults.

    Version 2 inherits them from the default's spec for that tensor, so every field where
    the default's spec differs from the QuantSpec defaults is written out explicitly
    (``bits`` only for the quantizers whose width is not fixed). Invalid parts are left
    as they are for the validation that follows.
    """
    out = dict(doc)
    out["version"] = 2
    default = doc.get("default", {})
    layers = doc.get("layers", {})
    if not isinstance(default, Mapping) or not isinstance(layers, Mapping):
        return out
    bases: dict[str, QuantSpec | None] = {}
    for tensor in _ENTRY_KEYS:
        implicit = getattr(LayerConfig(), tensor)
        raw = default[tensor] if tensor in default else _spec_to_obj(implicit)
        try:
            bases[tensor] = _spec_from_obj(raw, f"default.{tensor}")
        except ConfigError:  # reported by the validation; the entries keep version-1 text
            bases[tensor] = None
    new_layers: dict[Any, Any] = {}
    for key, entry in layers.items():
        if isinstance(entry, Mapping):
            entry = dict(entry)
            for tensor in _ENTRY_KEYS:
                spec, base = entry.get(tensor), bases[tensor]
                if isinstance(spec, Mapping) and base is not None:
                    entry[tensor] = _explicit_v1_spec(spec, base)
        new_layers[key] = entry
    out["layers"] = new_layers
    return out


def _explicit_v1_spec(spec: Mapping[Any, Any], base: QuantSpec) -> dict[Any, Any]:
    """A version-1 spec mapping that means the same under version 2's inheritance."""
    out = dict(spec)
    quantizer = out.get("quantizer", _QUANTSPEC_DEFAULT.quantizer)
    for f in _SPEC_FIELDS:
        if f in out:
            continue
        implied = getattr(_QUANTSPEC_DEFAULT, f)
        if f == "bits" and isinstance(quantizer, str) and quantizer in FIXED_WIDTH:
            continue  # the width of the format, in both versions
        if getattr(base, f) != implied:
            out[f] = implied
    return out


#: ``MIGRATIONS[v]`` turns a version-``v`` document into a version-``v + 1`` document.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    0: _migrate_0_to_1,
    1: _migrate_1_to_2,
}


def _migrate(doc: dict[str, Any], version: int) -> dict[str, Any]:
    while version < CONFIG_VERSION:
        doc = MIGRATIONS[version](doc)
        version += 1
    return doc


def config_from_dict(d: Mapping[str, Any], *, source: str | None = "<dict>") -> ModelConfig:
    """Validate a config document (any supported version) and build the ``ModelConfig``.

    ``source`` labels errors (the file name when loading a file). Raises :class:`ConfigError`.
    """
    try:
        if not isinstance(d, Mapping):
            raise ConfigError(
                f'must be a mapping with "format", "version", "default", "layers"; '
                f"got {_type_name(d)}" + (" (the file is empty)" if d is None else "")
            )
        version = _check_version(d)
        doc = _migrate(dict(d), version)
        _check_keys(doc, _TOP_KEYS, "")
        model = doc.get("model")
        if model is not None and not isinstance(model, str):
            raise ConfigError(f"must be a string or null, got {_type_name(model)}", path="model")
        if model is not None and not model.strip():
            raise ConfigError(
                f"must not be empty (got {model!r}); omit it or use null for no model",
                path="model",
            )
        default = _entry_from_obj(doc.get("default", {}), "default", None)
        layers = doc.get("layers", {})
        if not isinstance(layers, Mapping):
            raise ConfigError(
                f"must be a mapping of layer name or glob -> entry, got {_type_name(layers)}",
                path="layers",
            )
        overrides: list[tuple[str, LayerConfig]] = []
        for key, entry in layers.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(
                    "keys must be non-empty strings (layer names or globs), "
                    f"got {_short_repr(key)}",
                    path="layers",
                )
            overrides.append((key, _entry_from_obj(entry, _join("layers", key), default)))
        try:
            return ModelConfig(default=default, overrides=tuple(overrides), model=model)
        except ValueError as e:  # pragma: no cover - everything is checked above
            raise ConfigError(str(e)) from None
    except ConfigError as e:
        raise e.with_file(source) from None


# -- text and files --------------------------------------------------------------------------
def format_for_path(path: str | os.PathLike[str]) -> str:
    """``"json"`` or ``"yaml"`` from the file suffix; ``ValueError`` naming the file otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ConfigError(
            f"unknown config file type {suffix or '(no suffix)'!r}; use .json, .yaml or .yml",
            file=str(path),
        )
    return _SUFFIXES[suffix]


class _TooBig(Exception):
    """A YAML document over a bound (depth, aliases); carries the message and the mark."""

    def __init__(self, detail: str, mark: Any = None) -> None:
        super().__init__(detail)
        self.detail, self.mark = detail, mark


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with bounds: nesting depth while composing, and the node count
    and depth the aliases expand to before anything is constructed. Refuses duplicate
    mapping keys (``safe_load`` keeps the last)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooBig(
                    f"nested deeper than {MAX_DEPTH} levels",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                dup = key in seen
            except TypeError:  # unhashable key: let PyYAML report it
                break
            if dup:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {_short_repr(key)}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_node_graph(root: yaml.Node) -> None:
    """Refuse a composed YAML graph that expands (aliases followed) to more than
    :data:`MAX_NODES` nodes or :data:`MAX_DEPTH` levels, or that contains itself.

    Aliases share nodes, so the expanded size is computed once per distinct node
    (iteratively: the walk itself never recurses)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_NODES:
                raise _TooBig(
                    f"its aliases expand to more than {MAX_NODES:,} nodes (an alias bomb?)",
                    node.start_mark,
                )
            if depth[key] > MAX_DEPTH:
                raise _TooBig(
                    f"nested deeper than {MAX_DEPTH} levels once its aliases are expanded",
                    node.start_mark,
                )
            continue
        if key in size:
            continue
        if key in on_path:
            raise _TooBig("an alias refers to a node that contains it", node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        for c in reversed(children):
            if id(c) in on_path:
                raise _TooBig("an alias refers to a node that contains it", c.start_mark)
            if id(c) not in size:
                stack.append((c, False))


def _load_yaml(text: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()  # type: ignore[no-untyped-call]
        if node is None:
            return None
        _check_node_graph(node)
        return loader.construct_document(node)  # type: ignore[no-untyped-call]
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {_short_repr(k)}")
        out[k] = v
    return out


def _depth_exceeds(doc: Any, limit: int) -> bool:
    """Whether ``doc`` (plain dicts / lists) nests deeper than ``limit`` (no recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        obj, d = stack.pop()
        if isinstance(obj, dict | list):
            if d > limit:
                return True
            stack.extend((v, d + 1) for v in (obj.values() if isinstance(obj, dict) else obj))
    return False


def parse_json_bounded(text: str) -> Any:
    """``json.loads`` that refuses documents nested deeper than :data:`MAX_DEPTH` and
    duplicate keys with a ``ValueError`` (never a ``RecursionError``).

    Raises ``json.JSONDecodeError`` for syntax errors, ``ValueError`` for the rest."""
    try:
        doc = json.loads(text, object_pairs_hook=_json_pairs)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    if _depth_exceeds(doc, MAX_DEPTH):
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return doc


def _parse(text: str, fmt: str, source: str | None) -> Any:
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{len(text):,} characters; a config is at most {MAX_FILE_BYTES:,} bytes",
            file=source,
        )
    if fmt == "json":
        try:
            return parse_json_bounded(text)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"invalid JSON: {e.msg}", file=source, line=e.lineno, column=e.colno
            ) from None
        except ValueError as e:  # duplicate key, too deep, an integer of 5,000 digits
            raise ConfigError(f"invalid JSON: {e}", file=source) from None
    if fmt == "yaml":
        try:
            return _load_yaml(text)
        except _TooBig as e:
            mark = e.mark
            raise ConfigError(
                f"refused YAML: {e.detail}",
                file=source,
                line=mark.line + 1 if mark is not None else None,
                column=mark.column + 1 if mark is not None else None,
            ) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
            problem = getattr(e, "problem", None) or str(e)
            context = getattr(e, "context", None)
            detail = f"{context}: {problem}" if context and problem != str(e) else problem
            raise ConfigError(
                f"invalid YAML: {detail}",
                file=source,
                line=mark.line + 1 if mark is not None else None,
                column=mark.column + 1 if mark is not None else None,
            ) from None
        except (ValueError, TypeError, OverflowError, RecursionError) as e:
            # a value PyYAML's constructors choke on (an integer of 5,000 digits, a bad date)
            raise ConfigError(f"invalid YAML: {_short_repr(str(e), 200)}", file=source) from None
    raise ValueError(f"format: must be 'json' or 'yaml', got {fmt!r}")


def config_from_text(text: str, fmt: str, *, source: str | None = "<text>") -> ModelConfig:
    """Parse JSON or YAML text (``fmt`` = ``"json"`` / ``"yaml"``) into a ``ModelConfig``."""
    return config_from_dict(_parse(text, fmt, source), source=source)


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, double-quoting strings with Unicode line breaks.

    With ``allow_unicode`` PyYAML writes NEL / LS / PS raw inside plain or single-quoted
    scalars, and reads them back folded (``"\\x85"`` -> ``" "``); escaped they round-trip.
    """


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if any(c in data for c in "\x85\u2028\u2029"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')
    return dumper.represent_str(data)


_Dumper.add_representer(str, _represent_str)


def config_to_text(cfg: ModelConfig, fmt: str) -> str:
    """The file content of ``cfg`` as JSON or YAML text (ends with a newline)."""
    doc = config_to_dict(cfg)
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        return yaml.dump(
            doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
        )
    raise ValueError(f"format: must be 'json' or 'yaml', got {fmt!r}")


def read_text_bounded(path: str | os.PathLike[str], what: str) -> str:
    """The UTF-8 text (BOM dropped) of a regular file of at most :data:`MAX_FILE_BYTES`.

    ``FileNotFoundError``, ``IsADirectoryError`` and other ``OSError`` propagate; a file
    that is too big, not a regular file (a FIFO would block, ``/dev/zero`` never ends) or
    not UTF-8 raises ``ValueError`` saying so (``what`` names the kind: "config file")."""
    p = Path(path)
    st = p.stat()
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(21, "Is a directory", str(p))
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"not a regular file (a device or pipe?), not a {what}")
    if st.st_size > MAX_FILE_BYTES:
        raise ValueError(
            f"{st.st_size:,} bytes; a {what} is at most {MAX_FILE_BYTES:,} bytes "
            f"({MAX_FILE_BYTES // 2**20} MB): is this a {what}?"
        )
    with open(p, "rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)  # the file may have grown since stat()
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"over {MAX_FILE_BYTES:,} bytes; is this a {what}?")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {e.start}): is this a {what}?") from None


def load_config(path: str | os.PathLike[str]) -> ModelConfig:
    """Read a ``.json`` / ``.yaml`` / ``.yml`` config file; errors name the file and field."""
    name = str(path)
    fmt = format_for_path(path)
    try:
        text = read_text_bounded(path, "config file")
    except FileNotFoundError:
        raise ConfigError("no such file", file=name) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a config file", file=name) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", file=name) from None
    except ValueError as e:
        raise ConfigError(str(e), file=name) from None
    return config_from_text(text, fmt, source=name)


def save_config(cfg: ModelConfig, path: str | os.PathLike[str]) -> None:
    """Write ``cfg`` to ``path`` (JSON or YAML by suffix) atomically: all or nothing."""
    name = str(path)
    fmt = format_for_path(path)
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"save_config needs a ModelConfig, got {type(cfg).__name__}")
    data = config_to_text(cfg, fmt).encode("utf-8")
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise ConfigError(f"cannot write: {e.strerror or e}", file=name) from e
