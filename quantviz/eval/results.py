"""What evaluation produces: progress events, per-point results and the float baseline.

Everything here is plain data. :meth:`EvalResult.to_dict` is JSON-ready: non-finite floats
(an exact layer's ``inf`` SQNR, say) become ``None``, so ``json.dumps(..., allow_nan=False)``
never fails. The evaluated :class:`~quantviz.core.ModelConfig` stays an object on the result;
writing it to a file is :mod:`quantviz.io`'s job (the versioned config format lives there).

:class:`EvalError` is what evaluation raises when the user's model or data fail at run time:
the message names the model, the stage and the samples.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from quantviz.core import ModelConfig

__all__ = [
    "STAGES",
    "Baseline",
    "EvalError",
    "EvalResult",
    "PointDone",
    "Progress",
    "json_safe",
    "metric_drop",
    "relay_progress",
]

#: the stages of an evaluation, in order, as named in ``Progress.stage`` and ``timings``
STAGES = ("check", "baseline", "transform", "calibrate", "quantize", "forward", "metrics")


class EvalError(ValueError):
    """The model or the data failed during evaluation (not a bug of quantviz).

    ``model`` names the model source, ``stage`` one of :data:`STAGES` (with detail, e.g.
    ``forward (quantized model, samples 0-99 of digits)``), ``detail`` what went wrong. The
    message is ``"<model>: <stage>: <detail>"``.
    """

    def __init__(self, model: str, stage: str, detail: str) -> None:
        self.model, self.stage, self.detail = model, stage, detail
        super().__init__(f"{model}: {stage}: {detail}")


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
    """A sweep finished one point: ``result`` is the :class:`EvalResult` of point ``index``.

    ``completed`` counts the points finished so far when they finish out of order (on a
    cluster); 0 when they finish in order (then it is ``index + 1``).
    """

    result: EvalResult
    index: int
    total: int
    completed: int = 0

    @property
    def count(self) -> int:
        """How many points have finished, this one included."""
        return self.completed or self.index + 1


def metric_drop(baseline: float, value: float, higher_is_better: bool = True) -> float:
    """The loss of ``value`` against ``baseline``, positive when worse (either direction)."""
    return baseline - value if higher_is_better else value - baseline


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

    ``metric`` is ``accuracy`` (the data has labels), ``top1_agreement`` (agreement of the
    top-1 class with the float model) or ``perplexity`` (a causal LM on token data; lower is
    better: ``higher_is_better`` False, ``n_tokens`` the predicted positions, ``kl`` and
    ``top1_agreement`` over the next-token distributions); ``value`` is that metric and
    ``baseline`` the float model's value on the same data; ``drop`` is positive when worse.
    ``cosine`` (mean cosine similarity of outputs to the float outputs), ``kl`` (mean
    KL(float || quantized) of the softmax outputs, nats) and ``top1_agreement`` are always
    measured (``cosine`` not for a causal LM). Sizes are bytes; ``compression`` is
    ``float_bytes / model_bytes``; ``bops`` are bit operations per sample. ``layers`` holds
    one dict per quantizable layer: ``fqn``, ``bytes``, ``weight_sqnr_db`` (None when kept
    float or exact), ``bits_per_value``, ``scheme``. ``seconds`` is the wall time and
    ``timings`` splits it into the :data:`STAGES` (``check`` — validation —, ``baseline``,
    ``calibrate``, ``quantize``, ``forward``, ``metrics`` — sizes and the layer table): the
    timings add up to ``seconds``. ``config`` is the evaluated configuration (a
    ``ModelConfig``; not part of :meth:`to_dict`, see :func:`quantviz.io.config_to_dict`).
    ``batch_size`` is the batch size the evaluation ran with (1 when the model refused
    larger batches).
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
    config: ModelConfig | None = None
    top1_agreement: float | None = None
    cosine: float | None = None
    kl: float | None = None
    top5: float | None = None
    n_samples: int = 0
    device: str = "cpu"
    batch_size: int | None = None
    #: the metric's direction: False for perplexity (lower is better)
    higher_is_better: bool = True
    #: predicted token positions of a causal LM's evaluation (None for other models)
    n_tokens: int | None = None

    def __post_init__(self) -> None:
        from quantviz.core import ModelConfig

        if self.config is not None and not isinstance(self.config, ModelConfig):
            # documents written before the config moved out of the result held it as a dict
            # here; the session file keeps its own copy next to the result
            self.config = None

    @property
    def drop(self) -> float:
        """How much the metric lost to quantization, positive when worse than float:
        ``baseline - value`` (higher is better) or ``value - baseline`` (perplexity)."""
        return metric_drop(self.baseline, self.value, self.higher_is_better)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no inf / NaN; optional metrics that were not measured omitted).

        Without ``config``: the caller adds it in the file format it writes.
        """
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "config"}
        d["layers"] = [dict(lay) for lay in self.layers]
        d["timings"] = dict(self.timings)
        for k in ("top5", "batch_size", "n_tokens"):
            if d[k] is None:
                del d[k]
        d["drop"] = self.drop
        return json_safe(d)


@dataclass
class Baseline:
    """The float model on one data set: its metric and outputs, computed once and reused.

    ``outputs`` are the float model's outputs for every sample of ``data.x`` (on CPU), the
    reference for ``top1_agreement`` / ``cosine`` / ``kl``. :meth:`matches` tells whether it
    belongs to a given model and data (same objects). ``higher_is_better`` is the metric's
    direction (False for perplexity).
    """

    metric: str
    value: float
    outputs: torch.Tensor
    seconds: float
    top5: float | None = None
    _module_ref: Any = None
    _x_ref: Any = None
    #: the largest batch the model accepted (1 for a model that refused batches > 1)
    batch_limit: int | None = None
    higher_is_better: bool = True
    n_tokens: int | None = None

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
        batch_limit: int | None = None,
        higher_is_better: bool = True,
        n_tokens: int | None = None,
    ) -> Baseline:
        return cls(
            metric,
            value,
            outputs,
            seconds,
            top5,
            weakref.ref(module),
            weakref.ref(x),
            batch_limit,
            higher_is_better,
            n_tokens,
        )

    def matches(self, module: torch.nn.Module, x: torch.Tensor) -> bool:
        """True when this baseline was computed for ``module`` on exactly the tensor ``x``."""
        if self._module_ref is None or self._x_ref is None:
            return False
        return self._module_ref() is module and self._x_ref() is x


def relay_progress(
    gen: Generator[Any, Any, Any], recast: Callable[[Progress], Progress]
) -> Generator[Any, Any, Any]:
    """Relay ``gen``'s items, each :class:`Progress` through ``recast`` (e.g. as one point of
    several runs in one job); returns ``gen``'s value and closes it when stopped early."""
    try:
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            yield recast(item) if isinstance(item, Progress) else item
    finally:
        gen.close()
