"""What evaluation produces: progress events, per-point results and the float baseline.

Everything here is plain data. :meth:`EvalResult.to_dict` is JSON-ready: non-finite floats
(an exact layer's ``inf`` SQNR, say) become ``None``, so ``json.dumps(..., allow_nan=False)``
never fails.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = ["Baseline", "EvalResult", "PointDone", "Progress", "json_safe"]


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` steps of ``stage`` finished.

    ``stage`` is ``baseline``, ``calibrate``, ``quantize`` or ``forward`` (sweeps prefix the
    point, e.g. ``4-bit: forward``). ``point`` / ``points`` locate it inside a sweep.
    """

    done: int
    total: int
    stage: str
    point: int = 0
    points: int = 1

    @property
    def fraction(self) -> float:
        """Overall fraction finished in ``[0, 1]`` (sweeps: across all points)."""
        inner = self.done / self.total if self.total else 1.0
        return min(1.0, (self.point + inner) / max(self.points, 1))


@dataclass(frozen=True)
class PointDone:
    """A sweep finished one point: ``result`` is the :class:`EvalResult` of point ``index``."""

    result: EvalResult
    index: int
    total: int


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by ``None`` and tuples turned into lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


@dataclass
class EvalResult:
    """One evaluated configuration.

    ``metric`` is ``accuracy`` (the data has labels) or ``top1_agreement`` (agreement of the
    top-1 class with the float model); ``value`` is that metric and ``baseline`` the float
    model's value on the same data. ``cosine`` (mean cosine similarity of outputs to the
    float outputs), ``kl`` (mean KL(float || quantized) of the softmax outputs, nats) and
    ``top1_agreement`` are always measured. Sizes are bytes; ``compression`` is
    ``float_bytes / model_bytes``; ``bops`` are bit operations per sample. ``layers`` holds one
    dict per quantizable layer: ``fqn``, ``bytes``, ``weight_sqnr_db`` (None when kept float
    or exact), ``bits_per_value``, ``scheme``. ``seconds`` is the wall time and ``timings``
    splits it into ``baseline``, ``calibrate``, ``quantize`` and ``forward``.
    """

    metric: str
    value: float
    baseline: float
    model_bytes: float
    float_bytes: float
    compression: float
    bops: int
    float_bops: int
    layers: list[dict[str, Any]]
    seconds: float
    timings: dict[str, float]
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    top1_agreement: float | None = None
    cosine: float | None = None
    kl: float | None = None
    top5: float | None = None
    n_samples: int = 0
    device: str = "cpu"

    @property
    def drop(self) -> float:
        """``baseline - value``: how much the metric lost to quantization."""
        return self.baseline - self.value

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no inf / NaN; optional metrics that were not measured omitted)."""
        d = asdict(self)
        for k in ("top5",):
            if d[k] is None:
                del d[k]
        d["drop"] = self.drop
        return json_safe(d)


@dataclass
class Baseline:
    """The float model on one data set: its metric and outputs, computed once and reused.

    ``outputs`` are the float model's outputs for every sample of ``data.x`` (on CPU), the
    reference for ``top1_agreement`` / ``cosine`` / ``kl``. :meth:`matches` tells whether it
    belongs to a given model and data (same objects).
    """

    metric: str
    value: float
    outputs: torch.Tensor
    seconds: float
    top5: float | None = None
    _module_ref: Any = None
    _x_ref: Any = None

    @classmethod
    def build(
        cls,
        module: torch.nn.Module,
        x: torch.Tensor,
        metric: str,
        value: float,
        outputs: torch.Tensor,
        seconds: float,
        top5: float | None = None,
    ) -> Baseline:
        return cls(metric, value, outputs, seconds, top5, weakref.ref(module), weakref.ref(x))

    def matches(self, module: torch.nn.Module, x: torch.Tensor) -> bool:
        """True when this baseline was computed for ``module`` on exactly the tensor ``x``."""
        if self._module_ref is None or self._x_ref is None:
            return False
        return self._module_ref() is module and self._x_ref() is x
