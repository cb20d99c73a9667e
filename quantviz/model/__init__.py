"""Loading and introspecting models (no Qt): sources, layers, activation statistics."""

from quantviz.model.capture import ActivationStats, LayerStats, StatsCollector, capture_stats
from quantviz.model.errors import ArchitectureRequired, InputShapeRequired
from quantviz.model.handle import LayerInfo, ModelHandle
from quantviz.model.layers import add_hooks, discover_layers, get_weight
from quantviz.model.loading import ModelLoadError, TrustRequired, detect_kind, load_model
from quantviz.model.samples import list_samples

__all__ = [
    "ActivationStats",
    "ArchitectureRequired",
    "InputShapeRequired",
    "LayerInfo",
    "LayerStats",
    "ModelHandle",
    "ModelLoadError",
    "StatsCollector",
    "TrustRequired",
    "add_hooks",
    "capture_stats",
    "detect_kind",
    "discover_layers",
    "get_weight",
    "list_samples",
    "load_model",
]
