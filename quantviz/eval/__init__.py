"""Apply a config to a model, evaluate it, sweep bit-widths, rank sensitivities (no Qt).

Long work is a generator yielding :class:`Progress` (and, in sweeps, :class:`PointDone`)
events that can be stopped at any yield; :func:`run` drives one to completion.
"""

from quantviz.eval.apply import (
    AppliedConfig,
    WeightCache,
    WeightEntry,
    apply_config,
    check_config,
    needs_calibration,
    prepare_weights,
    quantized_bytes,
    stream_refusal,
)
from quantviz.eval.evaluate import calibrate, check_device, compute_baseline, evaluate, run, size_of
from quantviz.eval.pareto import pareto
from quantviz.eval.results import (
    STAGES,
    Baseline,
    EvalError,
    EvalResult,
    PointDone,
    Progress,
    json_safe,
)
from quantviz.eval.sweeps import (
    LayerSensitivity,
    MixedPrecisionResult,
    SensitivityResult,
    SweepResult,
    greedy_allocation,
    mixed_precision,
    sensitivity,
    uniform_sweep,
)

__all__ = [
    "STAGES",
    "AppliedConfig",
    "Baseline",
    "EvalError",
    "EvalResult",
    "LayerSensitivity",
    "MixedPrecisionResult",
    "PointDone",
    "Progress",
    "SensitivityResult",
    "SweepResult",
    "WeightCache",
    "WeightEntry",
    "apply_config",
    "calibrate",
    "check_config",
    "check_device",
    "compute_baseline",
    "evaluate",
    "greedy_allocation",
    "json_safe",
    "mixed_precision",
    "needs_calibration",
    "pareto",
    "prepare_weights",
    "quantized_bytes",
    "run",
    "sensitivity",
    "size_of",
    "stream_refusal",
    "uniform_sweep",
]
