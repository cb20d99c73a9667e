"""Per-layer bit-widths under memory budgets, allocated greedily from per-layer output KL."""

from __future__ import annotations

from collections.abc import Generator, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.core.memory import layer_bytes
from quantviz.core.units import human_bytes
from quantviz.eval.apply import WeightCache, check_config
from quantviz.eval.evaluate import (
    _weight_dtype_bytes,
    evaluate,
    size_of,
)
from quantviz.eval.pareto import pareto
from quantviz.eval.results import Baseline, EvalResult, PointDone, json_safe

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle
from quantviz.eval.sensitivity import SensitivityResult, sensitivity
from quantviz.eval.sweep_common import (
    DEFAULT_SPEC,
    Event,
    _check_spec,
    _ensure_baseline,
    parse_bits,
)

__all__ = ["MixedPrecisionResult", "greedy_allocation", "greedy_path", "mixed_precision"]


def greedy_path(
    layer_sizes: dict[str, dict[int, float]],
    kl: dict[str, dict[int, float]],
    candidate_bits: Sequence[int],
) -> list[tuple[dict[str, int], float]]:
    """The greedy bit-lowering trajectory, from every layer at the widest candidate down.

    Start with every layer at ``max(candidate_bits)``. At each step, over all layers not yet
    at the narrowest width, consider lowering that layer to its next narrower candidate:
    cost = increase of its output KL (measured with that layer alone quantized, clamped at
    0), gain = bytes saved; take the move with the smallest cost per byte saved (ties: more
    bytes saved, then layer order). Repeat until every layer is at the narrowest width.
    Returns every state ``(fqn -> bits, total bytes of the layers)`` along the way; the
    allocation for a budget is the first state whose size fits it. Sensitivities are
    assumed additive, the usual first-order approximation (as in HAWQ-style allocation).
    """
    order = sorted(set(candidate_bits), reverse=True)
    alloc = {f: order[0] for f in layer_sizes}
    pos = dict.fromkeys(layer_sizes, 0)
    names = list(layer_sizes)

    def total() -> float:
        return sum(layer_sizes[f][alloc[f]] for f in names)

    path = [(dict(alloc), total())]
    while True:
        best: tuple[float, float, int] | None = None
        best_f = None
        for idx, f in enumerate(names):
            if pos[f] + 1 >= len(order):
                continue
            b, nb = order[pos[f]], order[pos[f] + 1]
            saved = layer_sizes[f][b] - layer_sizes[f][nb]
            cost = max(kl[f][nb] - kl[f][b], 0.0)
            ratio = cost / saved if saved > 0 else float("inf")
            key = (ratio, -saved, idx)
            if best is None or key < best:
                best, best_f = key, f
        if best_f is None:
            return path
        pos[best_f] += 1
        alloc[best_f] = order[pos[best_f]]
        path.append((dict(alloc), total()))


def greedy_allocation(
    layer_sizes: dict[str, dict[int, float]],
    kl: dict[str, dict[int, float]],
    candidate_bits: Sequence[int],
    budget: float,
) -> dict[str, int] | None:
    """The greedy allocation (see :func:`greedy_path`) whose layers fit in ``budget`` bytes.

    ``None`` when even every layer at the narrowest width does not fit.
    """
    for alloc, size in greedy_path(layer_sizes, kl, candidate_bits):
        if size <= budget:
            return alloc
    return None


@dataclass
class MixedPrecisionResult:
    """Greedy mixed-precision points: one per feasible budget, with its allocation."""

    metric: str
    baseline: float
    float_bytes: float
    candidate_bits: tuple[int, ...]
    budgets: list[float]
    points: list[EvalResult]
    allocations: list[dict[str, int]]
    infeasible: list[float]
    sensitivity: SensitivityResult
    #: the metric's direction (False for perplexity: the front keeps the lowest)
    higher_is_better: bool = True

    @property
    def front(self) -> list[EvalResult]:
        return pareto(self.points, self.higher_is_better)

    def to_dict(self) -> dict[str, Any]:
        front = {id(p) for p in self.front}
        return json_safe(
            {
                "kind": "mixed_precision",
                "metric": self.metric,
                "higher_is_better": self.higher_is_better,
                "baseline": self.baseline,
                "float_bytes": self.float_bytes,
                "candidate_bits": list(self.candidate_bits),
                "budgets": self.budgets,
                "infeasible": self.infeasible,
                "points": [
                    {**p.to_dict(), "allocation": a} for p, a in zip(self.points, self.allocations)
                ],
                "pareto": [i for i, p in enumerate(self.points) if id(p) in front],
            }
        )


def mixed_precision(
    handle: ModelHandle,
    data: EvalData,
    sens: SensitivityResult | None = None,
    budgets: Iterable[float] | None = None,
    candidate_bits: int | str | Iterable[int] = (2, 3, 4, 6, 8),
    base_spec: QuantSpec = DEFAULT_SPEC,
    *,
    activation: QuantSpec | None = None,
    stats: MutableMapping[str, LayerStats] | None = None,
    cache: WeightCache | None = None,
    batch_size: int = 256,
    baseline: Baseline | None = None,
) -> Generator[Event, None, MixedPrecisionResult]:
    """Per-layer weight bit-widths under each memory budget (bytes of the whole model).

    The per-layer, per-width output KL comes from ``sens`` (a :func:`sensitivity` result
    with the same ``base_spec``); widths it lacks are measured first (yielding progress).
    Allocation: :func:`greedy_path`. ``budgets`` default to six sizes evenly spaced between
    the model with every layer at the narrowest and at the widest candidate. Budgets too
    small for any allocation are listed in ``infeasible``. Yields a :class:`PointDone` per
    evaluated budget; returns a :class:`MixedPrecisionResult`.
    """
    widths = tuple(sorted(parse_bits(candidate_bits, field_name="candidate_bits")))
    spec = _check_spec(base_spec)
    cache = cache if cache is not None else WeightCache()
    stats = stats if stats is not None else {}
    base = yield from _ensure_baseline(handle, data, baseline, batch_size)
    if sens is None or not sens.has(widths, spec):
        sens = yield from sensitivity(
            handle,
            data,
            widths,
            spec,
            cache=cache,
            batch_size=batch_size,
            baseline=base,
            previous=sens,
        )
    w_bytes = _weight_dtype_bytes(handle)
    sizes = {
        lay.fqn: {
            b: layer_bytes(lay, LayerConfig(weight=spec.with_(bits=b)), weight_dtype_bytes=w_bytes)
            for b in widths
        }
        for lay in handle.layers
    }
    kl = {ls.fqn: dict(ls.kl) for ls in sens.layers}
    missing = [f for f in sizes if f not in kl]
    if missing:
        raise ValueError(f"sens: no sensitivity for layers {', '.join(missing)}")
    path = greedy_path(sizes, kl, widths)
    layers_widest = path[0][1]
    _, float_bytes = size_of(handle, ModelConfig())
    m_widest = size_of(
        handle, ModelConfig(default=LayerConfig(weight=spec.with_(bits=widths[-1])))
    )[0]
    other = m_widest - layers_widest  # bytes outside the quantizable layers' weights
    if budgets is None:
        lo, hi = path[-1][1] + other, m_widest
        budget_list = [lo + (hi - lo) * k / 5 for k in range(6)]
    else:
        budget_list = [float(b) for b in budgets]
        for b in budget_list:
            if not b > 0:
                raise ValueError(
                    f"budgets: each budget must be a positive number of bytes, got {b}"
                )
    chosen: list[tuple[float, dict[str, int]]] = []
    infeasible: list[float] = []
    for budget in budget_list:
        alloc = next((a for a, s in path if s + other <= budget), None)
        if alloc is None:
            infeasible.append(budget)
        else:
            chosen.append((budget, alloc))
    points: list[EvalResult] = []
    allocations: list[dict[str, int]] = []
    done: dict[tuple[tuple[str, int], ...], EvalResult] = {}
    for i, (budget, alloc) in enumerate(chosen):
        key = tuple(sorted(alloc.items()))
        r = done.get(key)
        if r is None:
            cfg = ModelConfig(
                default=LayerConfig(weight=spec.with_(bits=widths[-1]), activation=activation),
                overrides=tuple(
                    (f, LayerConfig(weight=spec.with_(bits=b), activation=activation))
                    for f, b in alloc.items()
                    if b != widths[-1]
                ),
            )
            check_config(handle, cfg)
            r = yield from evaluate(
                handle,
                data,
                cfg,
                stats=stats,
                cache=cache,
                batch_size=batch_size,
                baseline=base,
                name=f"mixed <= {human_bytes(budget)}",
                progress_point=(i, len(chosen)),
            )
            done[key] = r
        points.append(r)
        allocations.append(dict(alloc))
        yield PointDone(r, i, len(chosen))
    return MixedPrecisionResult(
        base.metric,
        base.value,
        float_bytes,
        widths,
        budget_list,
        points,
        allocations,
        infeasible,
        sens,
        higher_is_better=base.higher_is_better,
    )
