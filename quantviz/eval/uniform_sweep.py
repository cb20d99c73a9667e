"""The same scheme at several bit-widths for every layer: one curve of the trade-off plot."""

from __future__ import annotations

from collections.abc import Generator, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.core.spec import transform_label
from quantviz.eval.apply import WeightCache, needs_calibration
from quantviz.eval.evaluate import (
    evaluate,
    size_of,
)
from quantviz.eval.pareto import pareto
from quantviz.eval.points import PointExecutor, PointFailed
from quantviz.eval.results import Baseline, EvalResult, PointDone, json_safe
from quantviz.eval.stats_cache import STATS_CACHE

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle
from quantviz.eval.sweep_common import (
    DEFAULT_SPEC,
    Event,
    _check_spec,
    _ensure_baseline,
    parse_bits,
)

__all__ = ["SweepResult", "uniform_sweep"]


@dataclass
class SweepResult:
    """The points of a sweep (one :class:`EvalResult` each) and their Pareto front.

    ``errors`` lists the points that could not be evaluated (on a cluster, a failing point
    does not stop the others): ``{"index", "name", "error"}`` each.
    """

    kind: str
    metric: str
    baseline: float
    float_bytes: float
    points: list[EvalResult]
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: the metric's direction (False for perplexity: the front keeps the lowest)
    higher_is_better: bool = True

    @property
    def front(self) -> list[EvalResult]:
        return pareto(self.points, self.higher_is_better)

    def to_dict(self) -> dict[str, Any]:
        front = {id(p) for p in self.front}
        doc: dict[str, Any] = {
            "kind": self.kind,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "baseline": self.baseline,
            "float_bytes": self.float_bytes,
            "points": [p.to_dict() for p in self.points],
            "pareto": [i for i, p in enumerate(self.points) if id(p) in front],
        }
        if self.errors:
            doc["errors"] = [dict(e) for e in self.errors]
        return json_safe(doc)


def uniform_sweep(
    handle: ModelHandle,
    data: EvalData,
    bits: int | str | Iterable[int] = (2, 3, 4, 5, 6, 8),
    base_spec: QuantSpec = DEFAULT_SPEC,
    *,
    activation: QuantSpec | None = None,
    stats: MutableMapping[str, LayerStats] | None = None,
    cache: WeightCache | None = None,
    batch_size: int = 256,
    baseline: Baseline | None = None,
    transforms: Iterable[Any] = (),
    executor: PointExecutor | None = None,
) -> Generator[Event, None, SweepResult]:
    """Every layer's weights at ``base_spec`` with each of ``bits``; one point per width.

    ``activation`` (optional) is the input-activation spec of every layer; ``transforms``
    (optional) the model transforms of every point (named in the points' names). Yields
    :class:`Progress` and a :class:`PointDone` per bit-width; returns a :class:`SweepResult`.
    Without ``stats``, calibration statistics come from (and go to)
    :data:`~quantviz.eval.stats_cache.STATS_CACHE`, so a repeated sweep skips calibration.
    ``executor`` (e.g. a :class:`quantviz.eval.cluster.Cluster`) evaluates the points
    elsewhere: they finish in any order and a failing point is an entry of
    ``SweepResult.errors`` instead of an exception.
    """
    widths = parse_bits(bits)
    spec = _check_spec(base_spec)
    cache = cache if cache is not None else WeightCache()
    configs = [
        ModelConfig(
            default=LayerConfig(weight=spec.with_(bits=b), activation=activation),
            transforms=tuple(transforms),
        )
        for b in widths
    ]
    label = transform_label(configs[0].transforms) if configs else ""
    names = [
        f"uniform W{spec.with_(bits=b).short()}"
        + (f" A{activation.short()}" if activation else "")
        + (f" + {label}" if label else "")
        for b in widths
    ]
    base = yield from _ensure_baseline(handle, data, baseline, batch_size)
    if stats is None:
        static = any(needs_calibration(handle, c) for c in configs)
        bs = min(batch_size, base.batch_limit or batch_size)
        stats = STATS_CACHE.stats_for(handle, data, bs) if static else {}
    float_bytes = size_of(handle, configs[0])[1]
    if executor is not None:
        outcomes = yield from executor.run(
            handle,
            data,
            list(zip(names, configs)),
            baseline=base,
            stats=stats,
            batch_size=batch_size,
        )
        done = [o for o in outcomes if isinstance(o, EvalResult)]
        errors = [o.to_dict() for o in outcomes if isinstance(o, PointFailed)]
        return SweepResult(
            "uniform",
            base.metric,
            base.value,
            float_bytes,
            done,
            errors,
            higher_is_better=base.higher_is_better,
        )
    points: list[EvalResult] = []
    for i, (name, cfg) in enumerate(zip(names, configs)):
        r = yield from evaluate(
            handle,
            data,
            cfg,
            stats=stats,
            cache=cache,
            batch_size=batch_size,
            baseline=base,
            name=name,
            progress_point=(i, len(widths)),
        )
        points.append(r)
        yield PointDone(r, i, len(widths))
    return SweepResult(
        "uniform",
        base.metric,
        base.value,
        float_bytes,
        points,
        higher_is_better=base.higher_is_better,
    )
