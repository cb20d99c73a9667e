"""Import a config file for an open model: every problem listed at once, nothing half-applied.

:func:`import_config` reads a quantviz config (JSON / YAML), validates every field and
checks every layer key (name or glob) against the model. It returns a new
:class:`~quantviz.core.spec.ModelConfig` or raises one :class:`ConfigImportError` that lists
all problems — invalid fields of every entry and every unknown layer name — so the caller
(the GUI's File > Import) applies all of it or none of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from quantviz.core.spec import LayerConfig, ModelConfig
from quantviz.io.config import (
    CONFIG_FORMAT,
    CONFIG_VERSION,
    ConfigError,
    config_from_dict,
    load_config,
)

if TYPE_CHECKING:
    from quantviz.model.handle import ModelHandle

__all__ = ["ConfigImportError", "import_config"]


class ConfigImportError(ConfigError):
    """Several problems with one config file; ``problems`` lists them (``path: detail``)."""

    def __init__(self, problems: list[str], *, file: str | None = None) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        detail = self.problems[0] if n == 1 else f"{n} problems: " + "; ".join(self.problems)
        super().__init__(detail, file=file)


def _problem(e: ConfigError) -> str:
    return f"{e.path}: {e.detail}" if e.path else e.detail


def _unknown_layers(keys: list[str], handle: ModelHandle) -> list[str]:
    probe = ModelConfig(overrides=tuple((k, LayerConfig()) for k in keys))
    return probe.unknown_keys(handle.fqns)


def _collect(doc: Mapping[str, Any], name: str) -> list[str]:
    """Validate each part of a version-current document separately; all problems."""
    from quantviz.io.config import _TOP_KEYS  # the known top-level keys

    problems: list[str] = []
    head = {"format": CONFIG_FORMAT, "version": CONFIG_VERSION}
    for k in doc:
        if k not in _TOP_KEYS:
            problems.append(f"{k}: unknown field (known: {', '.join(_TOP_KEYS)})")
    if doc.get("model") is not None and not isinstance(doc.get("model"), str):
        problems.append("model: must be a string or null")
    default = doc.get("default", {})
    try:
        config_from_dict({**head, "default": default}, source=None)
    except ConfigError as e:
        problems.append(_problem(e))
        default = {}
    layers = doc.get("layers", {})
    if not isinstance(layers, Mapping):
        problems.append("layers: must be a mapping of layer name or glob -> entry")
        return problems
    for key, entry in layers.items():
        try:
            config_from_dict({**head, "default": default, "layers": {key: entry}}, source=None)
        except ConfigError as e:
            problems.append(_problem(e))
    return problems


def import_config(path: str | os.PathLike[str], handle: ModelHandle) -> ModelConfig:
    """Read ``path`` and check it against ``handle``; a new config, or one error listing all.

    Raises :class:`ConfigImportError` (a ``ValueError``) naming the file and, per problem,
    the field path (``layers.conv1.weight.bits: must be 1..16, got 0``) or the layer keys
    that match no layer of the model.
    """
    name = str(path)
    try:
        cfg = load_config(path)
    except ConfigError as first:
        problems, keys = _recollect(path, first)
        problems += _unknown_problems(keys, handle)
        raise ConfigImportError(problems, file=name) from None
    unknown = _unknown_problems([k for k, _ in cfg.overrides], handle)
    if unknown:
        raise ConfigImportError(unknown, file=name)
    return cfg


def _unknown_problems(keys: list[str], handle: ModelHandle) -> list[str]:
    return [
        f"layers.{k}: matches no layer of {handle.name} (layers: {', '.join(handle.fqns)})"
        for k in _unknown_layers(keys, handle)
    ]


def _recollect(path: str | os.PathLike[str], first: ConfigError) -> tuple[list[str], list[str]]:
    """All problems of a file whose first problem is ``first``, and its layer keys."""
    from quantviz.io.config import (
        _check_version,
        _migrate,
        _parse,
        format_for_path,
        read_text_bounded,
    )

    try:
        fmt = format_for_path(path)
        text = read_text_bounded(path, "config file")  # bounded like load_config
        doc = _parse(text, fmt, str(path))
        if not isinstance(doc, Mapping):
            return [_problem(first)], []
        doc = _migrate(dict(doc), _check_version(doc))
    except (OSError, ValueError):  # ConfigError is a ValueError
        return [_problem(first)], []
    problems = _collect(doc, str(path)) or [_problem(first)]
    layers = doc.get("layers")
    keys = [k for k in layers if isinstance(k, str) and k] if isinstance(layers, Mapping) else []
    return problems, keys
