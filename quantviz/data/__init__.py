"""Evaluation data and task metrics (no Qt)."""

from quantviz.data.datasets import DataError, EvalData, load_data, load_model_for_data
from quantviz.data.metrics import MetricAccumulator, fidelity, topk_accuracy

__all__ = [
    "DataError",
    "EvalData",
    "MetricAccumulator",
    "fidelity",
    "load_data",
    "load_model_for_data",
    "topk_accuracy",
]
