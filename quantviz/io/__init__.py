"""Config (de)serialisation, exporters, config import and session files (no Qt).

``load_config`` / ``save_config`` read and write a ``ModelConfig`` as JSON or YAML (see
:mod:`quantviz.io.config`); :mod:`quantviz.io.atomic` holds the all-or-nothing file writes
every exporter uses. The exporters, :func:`import_config` and the session files are
imported on first use (they pull in torch).
"""

from typing import Any

from quantviz.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from quantviz.io.config import (
    CONFIG_FORMAT,
    CONFIG_VERSION,
    ConfigError,
    config_from_dict,
    config_from_text,
    config_to_dict,
    config_to_text,
    load_config,
    save_config,
)

_LAZY = {
    "export": "quantviz.io.exporters",
    "ExportResult": "quantviz.io.exporters",
    "load_quantized": "quantviz.io.exporters.safetensors_fmt",
    "import_config": "quantviz.io.importing",
    "ConfigImportError": "quantviz.io.importing",
    "load_session": "quantviz.io.session_file",
    "save_session": "quantviz.io.session_file",
    "SessionData": "quantviz.io.session_file",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'quantviz.io' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)


__all__ = [
    "CONFIG_FORMAT",
    "CONFIG_VERSION",
    "ConfigError",
    "ConfigImportError",
    "ExportResult",
    "SessionData",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "config_from_dict",
    "config_from_text",
    "config_to_dict",
    "config_to_text",
    "export",
    "import_config",
    "load_config",
    "load_quantized",
    "load_session",
    "save_config",
    "save_session",
]
