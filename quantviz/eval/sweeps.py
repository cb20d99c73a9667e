"""Sweeps that draw accuracy-vs-memory curves; each a generator like ``evaluate``.

Every sweep yields :class:`Progress` events and one :class:`PointDone` per finished point
(so a plot can grow point by point), and returns a result object with ``to_dict()``.
The float baseline, the calibration statistics and the weight cache are shared by all the
points of a sweep.

* :func:`uniform_sweep` — the same scheme at several bit-widths for every layer.
* :func:`sensitivity` — each layer alone quantized (weights), everything else float, at
  one or more bit-widths; ranked by metric drop and by output KL vs the float model.
* :func:`mixed_precision` — per-layer bit-widths under memory budgets, allocated greedily
  from the per-layer, per-bit-width output KL (see :func:`greedy_path`).
"""

from quantviz.eval.mixed_precision import (
    MixedPrecisionResult,
    greedy_allocation,
    greedy_path,
    mixed_precision,
)
from quantviz.eval.sensitivity import LayerSensitivity, SensitivityResult, sensitivity
from quantviz.eval.sweep_common import DEFAULT_SPEC, FLOAT, Event, parse_bits
from quantviz.eval.uniform_sweep import SweepResult, uniform_sweep

__all__ = [
    "DEFAULT_SPEC",
    "FLOAT",
    "Event",
    "LayerSensitivity",
    "MixedPrecisionResult",
    "SensitivityResult",
    "SweepResult",
    "greedy_allocation",
    "greedy_path",
    "mixed_precision",
    "parse_bits",
    "sensitivity",
    "uniform_sweep",
]
