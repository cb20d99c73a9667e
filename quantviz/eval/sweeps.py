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

from __future__ import annotations

from collections.abc import Generator, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quantviz.core import FIXED_WIDTH, LayerConfig, ModelConfig, QuantSpec
from quantviz.core.memory import layer_bytes
from quantviz.eval.apply import WeightCache, check_config
from quantviz.eval.evaluate import (
    _weight_dtype_bytes,
    compute_baseline,
    evaluate,
    size_of,
)
from quantviz.eval.pareto import pareto
from quantviz.eval.results import Baseline, EvalResult, PointDone, Progress, json_safe

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = [
    "DEFAULT_SPEC",
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

#: The weight scheme sweeps vary the bits of unless told otherwise.
DEFAULT_SPEC = QuantSpec(granularity="per_channel")
FLOAT = LayerConfig(weight=None, activation=None)

Event = Progress | PointDone


def parse_bits(bits: int | str | Iterable[int], *, field_name: str = "bits") -> tuple[int, ...]:
    """Bit-widths from an int, ``"2,3,4"`` or a sequence; each 1..16, no duplicates."""
    if isinstance(bits, str):
        parts = [p.strip() for p in bits.split(",")]
        if not parts or any(not p for p in parts):
            raise ValueError(f"{field_name}: expected comma-separated integers, got {bits!r}")
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"{field_name}: expected comma-separated integers, got {bits!r}"
            ) from None
    elif isinstance(bits, int) and not isinstance(bits, bool):
        vals = [bits]
    else:
        vals = list(bits)
    if not vals:
        raise ValueError(f"{field_name}: give at least one bit-width")
    for b in vals:
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 16:
            raise ValueError(f"{field_name}: each bit-width must be an integer 1..16, got {b!r}")
    if len(set(vals)) != len(vals):
        raise ValueError(f"{field_name}: duplicate bit-widths in {vals}")
    return tuple(vals)


def _check_spec(spec: QuantSpec) -> QuantSpec:
    if not isinstance(spec, QuantSpec):
        raise ValueError(f"base_spec: must be a QuantSpec, got {type(spec).__name__}")
    if spec.quantizer in FIXED_WIDTH:
        raise ValueError(
            f"base_spec: {spec.quantizer} has a fixed width of {FIXED_WIDTH[spec.quantizer]} "
            "bits; a bit-width sweep needs uniform, log2 or kmeans"
        )
    return spec


def _fmt_bytes(n: float) -> str:
    for unit, div in (("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f} B"


# ---------------------------------------------------------------------------------------
# uniform sweep
# ---------------------------------------------------------------------------------------
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


def _ensure_baseline(
    handle: ModelHandle, data: EvalData, baseline: Baseline | None, batch_size: int
) -> Generator[Progress, None, Baseline]:
    if baseline is not None and baseline.matches(handle.module, data.x):
        return baseline
    return (yield from compute_baseline(handle, data, batch_size=batch_size))


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
) -> Generator[Event, None, SweepResult]:
    """Every layer's weights at ``base_spec`` with each of ``bits``; one point per width.

    ``activation`` (optional) is the input-activation spec of every layer. Yields
    :class:`Progress` and a :class:`PointDone` per bit-width; returns a :class:`SweepResult`.
    """
    widths = parse_bits(bits)
    spec = _check_spec(base_spec)
    cache = cache if cache is not None else WeightCache()
    stats = stats if stats is not None else {}
    configs = [
        ModelConfig(default=LayerConfig(weight=spec.with_(bits=b), activation=activation))
        for b in widths
    ]
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
            + (f" A{activation.short()}" if activation else ""),
            progress_point=(i, len(widths)),
        )
        points.append(r)
        yield PointDone(r, i, len(widths))
    return SweepResult("uniform", base.metric, base.value, size_of(handle, configs[0])[1], points)


# ---------------------------------------------------------------------------------------
# sensitivity
# ---------------------------------------------------------------------------------------
@dataclass
class LayerSensitivity:
    """One layer quantized alone: the metric, output KL and weight SQNR per bit-width."""

    fqn: str
    params: int
    value: dict[int, float] = field(default_factory=dict)
    kl: dict[int, float] = field(default_factory=dict)
    sqnr_db: dict[int, float | None] = field(default_factory=dict)
    bytes: dict[int, float] = field(default_factory=dict)


@dataclass
class SensitivityResult:
    """Per-layer sensitivities at each of ``bits`` for the weight scheme ``spec``.

    Rankings use ``bits[0]`` (the first, normally the only, width): ``by_drop`` sorts the
    layers by metric drop (largest first), ``by_kl`` by output KL vs float (largest first).
    """

    metric: str
    baseline: float
    bits: tuple[int, ...]
    spec: QuantSpec
    layers: list[LayerSensitivity]

    def layer(self, fqn: str) -> LayerSensitivity:
        for ls in self.layers:
            if ls.fqn == fqn:
                return ls
        raise KeyError(f"no sensitivity for layer {fqn!r}")

    def drop(self, fqn: str, bits: int | None = None) -> float:
        b = self.bits[0] if bits is None else bits
        return self.baseline - self.layer(fqn).value[b]

    def by_drop(self, bits: int | None = None) -> list[str]:
        b = self.bits[0] if bits is None else bits
        return [
            ls.fqn
            for ls in sorted(self.layers, key=lambda s: (-(self.baseline - s.value[b]), -s.kl[b]))
        ]

    def by_kl(self, bits: int | None = None) -> list[str]:
        b = self.bits[0] if bits is None else bits
        return [ls.fqn for ls in sorted(self.layers, key=lambda s: -s.kl[b])]

    def has(self, bits: Iterable[int], spec: QuantSpec) -> bool:
        """True when every layer was measured at every one of ``bits`` with ``spec``."""
        want = [spec.with_(bits=b) for b in bits]
        return all(self.spec.with_(bits=w.bits) == w for w in want) and all(
            w.bits in ls.kl for ls in self.layers for w in want
        )

    def to_dict(self) -> dict[str, Any]:
        b = self.bits[0]
        rank_drop = {f: i + 1 for i, f in enumerate(self.by_drop())}
        rank_kl = {f: i + 1 for i, f in enumerate(self.by_kl())}
        return json_safe(
            {
                "metric": self.metric,
                "baseline": self.baseline,
                "bits": list(self.bits),
                "scheme": self.spec.with_(bits=b).short(),
                "layers": [
                    {
                        "fqn": ls.fqn,
                        "params": ls.params,
                        "value": ls.value[b],
                        "drop": self.baseline - ls.value[b],
                        "kl": ls.kl[b],
                        "weight_sqnr_db": ls.sqnr_db[b],
                        "rank_by_drop": rank_drop[ls.fqn],
                        "rank_by_kl": rank_kl[ls.fqn],
                        "per_bits": {
                            str(k): {"value": ls.value[k], "kl": ls.kl[k]} for k in self.bits
                        },
                    }
                    for ls in self.layers
                ],
                "by_drop": self.by_drop(),
                "by_kl": self.by_kl(),
            }
        )


def sensitivity(
    handle: ModelHandle,
    data: EvalData,
    bits: int | str | Iterable[int] = 4,
    spec: QuantSpec = DEFAULT_SPEC,
    *,
    layers: Sequence[str] | None = None,
    cache: WeightCache | None = None,
    batch_size: int = 256,
    baseline: Baseline | None = None,
    previous: SensitivityResult | None = None,
) -> Generator[Event, None, SensitivityResult]:
    """Each layer's weights alone at ``spec`` with each of ``bits``, the rest float.

    ``layers`` restricts the layers measured (default: all). ``previous`` (same spec) is
    extended: measurements it already holds are not repeated. Yields a :class:`PointDone`
    per (layer, width); returns a :class:`SensitivityResult`.
    """
    widths = parse_bits(bits)
    spec = _check_spec(spec)
    fqns = list(handle.fqns if layers is None else layers)
    for f in fqns:
        try:
            handle.layer(f)
        except KeyError:
            raise ValueError(f"layers: {f!r} is not a layer of {handle.name}") from None
    cache = cache if cache is not None else WeightCache()
    base = yield from _ensure_baseline(handle, data, baseline, batch_size)
    w_bytes = _weight_dtype_bytes(handle)
    known: dict[str, LayerSensitivity] = {}
    if previous is not None and previous.spec.with_(bits=spec.bits) == spec:
        known = {ls.fqn: ls for ls in previous.layers}
    out = [known.get(f) or LayerSensitivity(f, handle.layer(f).params) for f in fqns]
    todo = [(ls, b) for b in widths for ls in out if b not in ls.kl]
    for i, (ls, b) in enumerate(todo):
        s = spec.with_(bits=b)
        cfg = ModelConfig(default=FLOAT, overrides=((ls.fqn, LayerConfig(weight=s)),))
        r = yield from evaluate(
            handle,
            data,
            cfg,
            cache=cache,
            batch_size=batch_size,
            baseline=base,
            name=f"{ls.fqn} W{s.short()}",
            progress_point=(i, len(todo)),
        )
        ls.value[b] = r.value
        ls.kl[b] = float(r.kl or 0.0)
        ls.sqnr_db[b] = next(lay["weight_sqnr_db"] for lay in r.layers if lay["fqn"] == ls.fqn)
        ls.bytes[b] = layer_bytes(
            handle.layer(ls.fqn), LayerConfig(weight=s), weight_dtype_bytes=w_bytes
        )
        yield PointDone(r, i, len(todo))
    all_bits = tuple(dict.fromkeys((*widths, *(previous.bits if known and previous else ()))))
    return SensitivityResult(base.metric, base.value, all_bits, spec, out)


# ---------------------------------------------------------------------------------------
# mixed precision
# ---------------------------------------------------------------------------------------
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

    @property
    def front(self) -> list[EvalResult]:
        return pareto(self.points)

    def to_dict(self) -> dict[str, Any]:
        front = {id(p) for p in self.front}
        return json_safe(
            {
                "kind": "mixed_precision",
                "metric": self.metric,
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
                name=f"mixed <= {_fmt_bytes(budget)}",
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
    )
