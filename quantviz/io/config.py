"""Reading and writing ``ModelConfig`` as JSON or YAML (same content, versioned).

The layout (version 1)::

    {
      "format": "quantviz-config", "version": 1,
      "model": "sample:digits_cnn",                      # optional, informational
      "default": {"weight": {"bits": 8, "granularity": "per_channel"}, "activation": null},
      "layers": {                                        # ordered: the last match wins
        "conv1": {"weight": {"bits": 4, "quantizer": "kmeans"}},
        "fc*":   {"weight": null}
      }
    }

Rules:

- A QuantSpec is a mapping of its fields; omitted fields take the ``QuantSpec`` defaults
  (``{}`` is 8-bit uniform symmetric per-tensor min/max). ``null`` keeps the tensor float.
- ``default``: an omitted ``weight`` is ``QuantSpec()`` and an omitted ``activation`` is
  ``null`` (the ``LayerConfig`` defaults). Writers always write both.
- ``layers``: keys are a layer's fully-qualified name or an ``fnmatch`` glob, applied in file
  order (the last matching key wins). **In a layer entry an omitted ``weight`` or
  ``activation`` key inherits the default's value for that tensor**; ``null`` keeps it float.
  Writers omit a key exactly when it equals the default's value, so a round trip is exact.
- Unknown fields, wrong types and out-of-range values raise :class:`ConfigError` (a
  ``ValueError``) naming the field path, prefixed with the file name when read from a file:
  ``cfg.yaml: layers.conv1.weight.bits: must be 1..16, got 0``.
- ``version`` newer than :data:`CONFIG_VERSION` is refused; older versions are upgraded by
  the functions in :data:`MIGRATIONS`, one version step at a time.

Version 0 (a pre-release layout, kept to exercise the migration path) differs from version 1
only in how overrides are stored: a list of ``[pattern, entry]`` pairs under ``"overrides"``
instead of the ``"layers"`` mapping.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from quantviz.core.spec import FIXED_WIDTH, LayerConfig, ModelConfig, QuantSpec
from quantviz.io.atomic import atomic_write_bytes

__all__ = [
    "CONFIG_FORMAT",
    "CONFIG_VERSION",
    "MIGRATIONS",
    "ConfigError",
    "config_from_dict",
    "config_from_text",
    "config_to_dict",
    "config_to_text",
    "format_for_path",
    "load_config",
    "save_config",
]

CONFIG_FORMAT = "quantviz-config"
CONFIG_VERSION = 1

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
def _spec_to_obj(spec: QuantSpec | None) -> dict[str, Any] | None:
    return None if spec is None else spec.to_dict()


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """The version-1 document of ``cfg`` (plain dicts/lists/scalars, ready for JSON/YAML).

    QuantSpecs are written with their non-default fields only; a layer entry omits
    ``weight``/``activation`` where it equals the default's (see the module docstring).
    """
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"config_to_dict needs a ModelConfig, got {type(cfg).__name__}")
    default = cfg.default
    layers: dict[str, Any] = {}
    for key, lc in cfg.overrides:
        entry: dict[str, Any] = {}
        if lc.weight != default.weight:
            entry["weight"] = _spec_to_obj(lc.weight)
        if lc.activation != default.activation:
            entry["activation"] = _spec_to_obj(lc.activation)
        layers[key] = entry
    return {
        "format": CONFIG_FORMAT,
        "version": CONFIG_VERSION,
        "model": cfg.model,
        "default": {
            "weight": _spec_to_obj(default.weight),
            "activation": _spec_to_obj(default.activation),
        },
        "layers": layers,
    }


# -- from dict -------------------------------------------------------------------------------
_SPEC_FIELDS = tuple(QuantSpec.__dataclass_fields__)


def _spec_from_obj(obj: object, path: str) -> QuantSpec | None:
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise ConfigError(
            f"must be a mapping of QuantSpec fields or null, got {_type_name(obj)}", path=path
        )
    for k in obj:
        if k not in _SPEC_FIELDS:
            raise ConfigError(
                f"unknown field (known: {', '.join(_SPEC_FIELDS)})", path=_join(path, k)
            )
    try:
        spec = QuantSpec.from_dict(obj)
    except (ValueError, TypeError) as e:
        field, sep, detail = str(e).partition(": ")
        if sep and field in _SPEC_FIELDS:
            raise ConfigError(detail, path=_join(path, field)) from None
        raise ConfigError(str(e), path=path) from None
    given_bits = obj.get("bits")
    if spec.quantizer in FIXED_WIDTH and given_bits is not None and given_bits != spec.bits:
        raise ConfigError(
            f"{spec.quantizer} has a fixed width of {spec.bits} bits, got {given_bits!r}",
            path=_join(path, "bits"),
        )
    return spec


def _check_keys(obj: Mapping[Any, Any], known: tuple[str, ...], path: str) -> None:
    for k in obj:
        if k not in known:
            raise ConfigError(f"unknown field (known: {', '.join(known)})", path=_join(path, k))


def _entry_from_obj(obj: object, path: str, default: LayerConfig | None) -> LayerConfig:
    """A ``default`` block (``default=None``) or a layer entry inheriting from ``default``."""
    if not isinstance(obj, Mapping):
        raise ConfigError(
            'must be a mapping with "weight" and/or "activation", got '
            f'{_type_name(obj)} (use {{"weight": null, "activation": null}} for float)',
            path=path,
        )
    _check_keys(obj, _ENTRY_KEYS, path)
    base = default if default is not None else LayerConfig()
    weight = (
        _spec_from_obj(obj["weight"], _join(path, "weight")) if "weight" in obj else base.weight
    )
    activation = (
        _spec_from_obj(obj["activation"], _join(path, "activation"))
        if "activation" in obj
        else base.activation
    )
    return LayerConfig(weight=weight, activation=activation)


def _check_version(doc: Mapping[Any, Any]) -> int:
    if "format" not in doc:
        raise ConfigError(
            f'missing; a quantviz config has "format": "{CONFIG_FORMAT}"', path="format"
        )
    if doc["format"] != CONFIG_FORMAT:
        raise ConfigError(
            f"must be {CONFIG_FORMAT!r}, got {doc['format']!r} (not a quantviz config file?)",
            path="format",
        )
    if "version" not in doc:
        raise ConfigError(f"missing; the current version is {CONFIG_VERSION}", path="version")
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"must be an integer, got {version!r}", path="version")
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
            raise ConfigError(f"must be a [pattern, entry] pair, got {pair!r}", path=p)
        key, entry = pair
        if not isinstance(key, str) or not key:
            raise ConfigError(f"pattern must be a non-empty string, got {key!r}", path=p)
        if key in layers:
            raise ConfigError(f"{key!r} appears twice", path=p)
        layers[key] = entry
    out["layers"] = layers
    out["version"] = 1
    return out


#: ``MIGRATIONS[v]`` turns a version-``v`` document into a version-``v + 1`` document.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _migrate_0_to_1}


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
                    f"keys must be non-empty strings (layer names or globs), got {key!r}",
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate mapping keys (safe_load keeps the last)."""

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
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _parse(text: str, fmt: str, source: str | None) -> Any:
    if fmt == "json":
        try:
            return json.loads(text, object_pairs_hook=_json_pairs)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"invalid JSON: {e.msg}", file=source, line=e.lineno, column=e.colno
            ) from None
        except ValueError as e:  # duplicate key
            raise ConfigError(f"invalid JSON: {e}", file=source) from None
    if fmt == "yaml":
        try:
            return yaml.load(text, Loader=_UniqueKeyLoader)
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


def load_config(path: str | os.PathLike[str]) -> ModelConfig:
    """Read a ``.json`` / ``.yaml`` / ``.yml`` config file; errors name the file and field."""
    name = str(path)
    fmt = format_for_path(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError("no such file", file=name) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a config file", file=name) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", file=name) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"not UTF-8 text (byte {e.start}): is this a config file?", file=name
        ) from None
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
