"""Config (de)serialisation and exporters (no Qt).

``load_config`` / ``save_config`` read and write a ``ModelConfig`` as JSON or YAML (see
:mod:`quantviz.io.config`); :mod:`quantviz.io.atomic` holds the all-or-nothing file writes
every exporter uses.
"""

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

__all__ = [
    "CONFIG_FORMAT",
    "CONFIG_VERSION",
    "ConfigError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "config_from_dict",
    "config_from_text",
    "config_to_dict",
    "config_to_text",
    "load_config",
    "save_config",
]
