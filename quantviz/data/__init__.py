"""Evaluation data and task metrics (no Qt)."""

from quantviz.data.datasets import DataError, EvalData, load_data, load_model_for_data
from quantviz.data.metrics import (
    MetricAccumulator,
    PerplexityAccumulator,
    fidelity,
    higher_is_better,
    make_accumulator,
    topk_accuracy,
)

__all__ = [
    "DataError",
    "EvalData",
    "MetricAccumulator",
    "PerplexityAccumulator",
    "fidelity",
    "higher_is_better",
    "load_data",
    "load_model_for_data",
    "make_accumulator",
    "topk_accuracy",
]
