"""quantviz: see what quantization does to a neural network.

Importing this package imports no Qt (and, lazily, not even torch until a name needs it).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "QuantSpec": "quantviz.core",
    "LayerConfig": "quantviz.core",
    "ModelConfig": "quantviz.core",
    "QuantResult": "quantviz.core",
    "quantize": "quantviz.core",
    "fake_quantize": "quantviz.core",
    "load_config": "quantviz.io",
    "save_config": "quantviz.io",
    "load_model": "quantviz.model",
    "evaluate": "quantviz.eval",
    "apply_config": "quantviz.eval",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'quantviz' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)
