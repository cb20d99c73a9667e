"""The configurations every front-end starts from (one place: the GUI, the CLI and sweeps)."""

from __future__ import annotations

from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec

__all__ = ["DEFAULT_CONFIG", "DEFAULT_WEIGHT_SPEC", "FLOAT_CONFIG"]

#: W8 uniform symmetric per-channel (axis 0) min/max: what ``quantviz eval`` and a freshly
#: opened model in the app use when no configuration is given.
DEFAULT_WEIGHT_SPEC = QuantSpec(bits=8, granularity="per_channel")

#: The default configuration: :data:`DEFAULT_WEIGHT_SPEC` weights, float activations.
DEFAULT_CONFIG = ModelConfig(default=LayerConfig(weight=DEFAULT_WEIGHT_SPEC, activation=None))

#: Every layer kept in float (the reference of every comparison).
FLOAT_CONFIG = ModelConfig(default=LayerConfig(weight=None, activation=None))
