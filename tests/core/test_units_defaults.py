"""One byte formatter and one default configuration for every entry point."""

from __future__ import annotations

import pytest

from quantviz.core.defaults import DEFAULT_CONFIG, FLOAT_CONFIG
from quantviz.core.spec import QuantSpec
from quantviz.core.units import human_bytes


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "0 B"),
        (999, "999 B"),
        (999.6, "1.00 kB"),
        (1500, "1.50 kB"),
        (153_600, "153.60 kB"),
        (999_999, "1.00 MB"),
        (3.2e6, "3.20 MB"),
        (1.1e9, "1.10 GB"),
        (2.5e12, "2.50 TB"),
        (-2048, "-2.05 kB"),
        (float("inf"), "n/a"),
        (float("nan"), "n/a"),
    ],
)
def test_human_bytes(n, text):
    assert human_bytes(n) == text


def test_default_config_is_w8_per_channel_minmax_float_activations():
    d = DEFAULT_CONFIG.default
    assert d.activation is None and not DEFAULT_CONFIG.overrides
    assert d.weight == QuantSpec(bits=8, granularity="per_channel")
    w = d.weight
    assert (w.quantizer, w.symmetric, w.axis, w.calibration) == ("uniform", True, 0, "minmax")
    assert FLOAT_CONFIG.resolve("any.layer").is_float


def test_defaults_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys, quantviz.core.defaults, quantviz.core.units\n"
        "assert 'torch' not in sys.modules\n"
    )
    import os
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)
