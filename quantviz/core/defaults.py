"""The configurations every entry point starts from (one place; imports no torch).

``DEFAULT_CONFIG`` is what ``quantviz eval`` evaluates without ``--config`` and what the app
starts at: 8-bit uniform symmetric weights with one min/max range per output channel
(``per_channel``, axis 0), activations kept float. Per-channel is the default because it is
what deployment toolchains (TensorRT, ONNX Runtime, TFLite, AIMET) use for weights and
because per-tensor 8-bit loses accuracy on depthwise convolutions and layers with uneven
channel ranges. ``FLOAT_CONFIG`` keeps every tensor float (the reference).
"""

from __future__ import annotations

from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec

__all__ = ["DEFAULT_CONFIG", "DEFAULT_NAME", "DEFAULT_WEIGHT", "FLOAT_CONFIG", "FLOAT_NAME"]

#: 8-bit uniform symmetric, per output channel, min/max calibration
DEFAULT_WEIGHT = QuantSpec(
    bits=8,
    quantizer="uniform",
    symmetric=True,
    granularity="per_channel",
    axis=0,
    calibration="minmax",
)

#: the default configuration: ``DEFAULT_WEIGHT`` for every layer, activations float
DEFAULT_CONFIG = ModelConfig(default=LayerConfig(weight=DEFAULT_WEIGHT, activation=None))
#: a short human name of ``DEFAULT_CONFIG``
DEFAULT_NAME = "W8 per-channel (default)"

#: every weight and activation kept float
FLOAT_CONFIG = ModelConfig(default=LayerConfig(weight=None, activation=None))
FLOAT_NAME = "float"
