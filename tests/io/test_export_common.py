"""Shared helpers of the export tests: the two samples, a mixed config, calibration stats."""

from __future__ import annotations

import functools

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.data import load_data
from quantviz.eval import calibrate, needs_calibration, run
from quantviz.model import load_model

SAMPLES = ("sample:digits_cnn", "sample:digits_mobilenet")


@functools.cache
def handle_and_data(source: str):
    h = load_model(source)
    return h, load_data(None, h)


def mixed_config(handle, *, activations: bool = True) -> ModelConfig:
    """Per layer a different scheme: uniform per tensor / channel / group, k-means, NF4."""
    f = handle.fqns
    act = QuantSpec(bits=8, symmetric=False) if activations else None
    return ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=8, granularity="per_channel"), activation=act),
        overrides=(
            (f[0], LayerConfig(weight=QuantSpec(bits=4, quantizer="kmeans"), activation=act)),
            (f[1], LayerConfig(weight=QuantSpec(bits=4, symmetric=False), activation=act)),
            (
                f[-2],
                LayerConfig(
                    weight=QuantSpec(bits=4, granularity="per_group", group_size=16),
                    activation=QuantSpec(bits=6, symmetric=False) if activations else None,
                ),
            ),
            (f[-1], LayerConfig(weight=QuantSpec(quantizer="nf4", granularity="per_channel"))),
        ),
    )


@functools.cache
def stats_for(source: str):
    h, data = handle_and_data(source)
    cfg = mixed_config(h)
    return run(calibrate(h, data, needs_calibration(h, cfg), {}))
