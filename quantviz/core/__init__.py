"""Pure numerics on torch tensors: specs, quantizers, calibration, metrics, memory. No Qt.

The spec types import without torch (config files load fast); the quantizers import it on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quantviz.core.spec import (
    CALIBRATIONS,
    FIXED_WIDTH,
    GRANULARITIES,
    QUANTIZERS,
    LayerConfig,
    ModelConfig,
    QuantSpec,
)

if TYPE_CHECKING:
    from quantviz.core.quantization import (
        FittedQuantizer,
        QuantResult,
        clear_cache,
        fake_quantize,
        fit_quantizer,
        quantize,
    )

_LAZY = {
    "FittedQuantizer",
    "QuantResult",
    "clear_cache",
    "fake_quantize",
    "fit_quantizer",
    "quantize",
}

__all__ = [
    "CALIBRATIONS",
    "FIXED_WIDTH",
    "GRANULARITIES",
    "QUANTIZERS",
    "FittedQuantizer",
    "LayerConfig",
    "ModelConfig",
    "QuantResult",
    "QuantSpec",
    "clear_cache",
    "fake_quantize",
    "fit_quantizer",
    "quantize",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        _q = importlib.import_module("quantviz.core.quantization")

        return getattr(_q, name)
    raise AttributeError(f"module 'quantviz.core' has no attribute {name!r}")
