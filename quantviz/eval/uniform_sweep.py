"""The same scheme at several bit-widths for every layer: one curve of the trade-off plot."""

from __future__ import annotations

from collections.abc import Generator, Iterable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.core.spec import transform_label
from quantviz.eval.apply import WeightCache
from quantviz.eval.evaluate import (
    evaluate,
    size_of,
)
from quantviz.eval.pareto import pareto
from quantviz.eval.results import Baseline, EvalResult, PointDone, json_safe

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
    """The points of a sweep (one :class:`EvalResult` each) and their Pareto front."""

    kind: str
    metric: str
    baseline: float
    float_bytes: float
    points: list[EvalResult]

    @property
    def front(self) -> list[EvalResult]:
        return pareto(self.points)

    def to_dict(self) -> dict[str, Any]:
        front = {id(p) for p in self.front}
        return json_safe(
            {
                "kind": self.kind,
                "metric": self.metric,
                "baseline": self.baseline,
                "float_bytes": self.float_bytes,
                "points": [p.to_dict() for p in self.points],
                "pareto": [i for i, p in enumerate(self.points) if id(p) in front],
            }
        )


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
) -> Generator[Event, None, SweepResult]:
    """Every layer's weights at ``base_spec`` with each of ``bits``; one point per width.

    ``activation`` (optional) is the input-activation spec of every layer; ``transforms``
    (optional) the model transforms of every point (named in the points' names). Yields
    :class:`Progress` and a :class:`PointDone` per bit-width; returns a :class:`SweepResult`.
    """
    widths = parse_bits(bits)
    spec = _check_spec(base_spec)
    cache = cache if cache is not None else WeightCache()
    stats = stats if stats is not None else {}
    configs = [
        ModelConfig(
            default=LayerConfig(weight=spec.with_(bits=b), activation=activation),
            transforms=tuple(transforms),
        )
        for b in widths
    ]
    label = transform_label(configs[0].transforms) if configs else ""
    base = yield from _ensure_baseline(handle, data, baseline, batch_size)
    points: list[EvalResult] = []
    for i, (b, cfg) in enumerate(zip(widths, configs)):
        r = yield from evaluate(
            handle,
            data,
            cfg,
            stats=stats,
            cache=cache,
            batch_size=batch_size,
            baseline=base,
            name=f"uniform W{spec.with_(bits=b).short()}"
            + (f" A{activation.short()}" if activation else "")
            + (f" + {label}" if label else ""),
            progress_point=(i, len(widths)),
        )
        points.append(r)
        yield PointDone(r, i, len(widths))
    return SweepResult("uniform", base.metric, base.value, size_of(handle, configs[0])[1], points)
