"""Exact mixed precision over a menu of schemes: per-(layer, scheme) proxy costs, then the
multiple-choice knapsack solved exactly (:mod:`quantviz.core.mckp`, HiGHS ILP) or greedily.

* :func:`candidates` — every (layer, scheme) of the menu that applies to the layer's weight
  (a group size must divide the row; a block format needs rows that are whole blocks), with
  its weight bytes and BOPs.
* :func:`cost_table` — a generator (progress, cancel by closing it) that measures a proxy for
  every candidate and returns a :class:`CostTable`. Proxies resolve through :data:`PROXIES`
  ``{name: function(handle, data, candidates) -> generator returning {(fqn, label): cost}}``:
  ``mse`` (the weight's squared quantization error ``||W - Q(W)||^2``; needs no data) and
  ``kl`` (the model's output KL vs float with that layer alone quantized, the KL ablation of
  :mod:`quantviz.eval.sensitivity`) are built in; ``hessian`` (HAWQ-V2 Hutchinson trace
  times ``||dW||^2``) and ``fisher`` (diagonal empirical Fisher times ``dW^2``) come from
  :mod:`quantviz.eval.proxies`. A name mapped to ``None`` refuses with "not available".
* :meth:`CostTable.solve` — the assignment for a :class:`~quantviz.core.mixed_spec.Budget`.

Sizes: ``fixed_bytes`` is everything no choice changes (biases, norms, buffers, tensors that
are not quantizable weights, at their dtype); ``model_bytes = fixed_bytes + sum of the chosen
weight bytes``. A fraction budget is of the float model's bytes; a bits-per-weight budget
bounds the chosen weight bytes by ``bpw * weights / 8``; a BOPs budget bounds the sum of
``macs * weight bits * 32`` (activations float) over the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.core.mckp import Choice, front, solve
from quantviz.core.memory import FLOAT_BITS, tensor_bytes
from quantviz.core.mixed_spec import Budget, Scheme
from quantviz.core.units import human_bytes
from quantviz.eval.results import Baseline, Progress, json_safe

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.eval.apply import WeightCache
    from quantviz.model.handle import ModelHandle

__all__ = [
    "PROXIES",
    "Candidate",
    "CostTable",
    "MixedSolution",
    "candidates",
    "config_of_assignment",
    "cost_table",
    "proxy_function",
]

Costs = dict[tuple[str, str], float]
ProxyFn = Callable[..., Generator[Any, None, Costs]]


@dataclass(frozen=True)
class Candidate:
    """One (layer, scheme) the solver may pick: the weight's bytes and the layer's BOPs."""

    fqn: str
    label: str
    spec: QuantSpec | None
    bytes: float
    bops: int


def _weight_bytes(handle: ModelHandle) -> int:
    for f in handle.fqns:
        return int(handle.weight(f).element_size())
    return 4


def candidates(handle: ModelHandle, schemes: Sequence[Scheme]) -> list[Candidate]:
    """Every scheme of ``schemes`` that applies to each layer, in layer then menu order.

    Raises ``ValueError`` naming the layer when none applies to it."""
    from quantviz.core.quantizers import row_view

    wb = _weight_bytes(handle)
    out: list[Candidate] = []
    for lay in handle.layers:
        shape = tuple(lay.weight_shape)
        mine = []
        for s in schemes:
            if s.spec is not None:
                try:
                    row_view(shape, s.spec)
                except ValueError:
                    continue
            bits = FLOAT_BITS if s.spec is None else s.spec.bits
            b = tensor_bytes(s.spec, shape, wb)
            mine.append(Candidate(lay.fqn, s.label, s.spec, float(b), int(lay.macs) * bits * 32))
        if not mine:
            raise ValueError(
                f"--choices: no scheme applies to layer {lay.fqn} (weight {list(shape)}); "
                "add one that fits it, e.g. float or int8:pc"
            )
        out.extend(mine)
    return out


# -- proxies ------------------------------------------------------------------------------
def mse_proxy(
    handle: ModelHandle, data: EvalData | None, cands: Sequence[Candidate], **_: Any
) -> Generator[Progress, None, Costs]:
    """``||W - Q(W)||^2`` per candidate (0 kept float)."""
    from quantviz.core import quantize

    out: Costs = {}
    for i, c in enumerate(cands):
        if c.spec is None:
            out[(c.fqn, c.label)] = 0.0
        else:
            w = handle.weight(c.fqn)
            out[(c.fqn, c.label)] = float(quantize(w, c.spec).mse) * w.numel()
        yield Progress(i + 1, len(cands), "proxy mse")
    return out


def kl_proxy(
    handle: ModelHandle,
    data: EvalData | None,
    cands: Sequence[Candidate],
    *,
    cache: WeightCache | None = None,
    baseline: Baseline | None = None,
    batch_size: int = 256,
) -> Generator[Any, None, Costs]:
    """The output KL(float || quantized) with that layer alone quantized (0 kept float)."""
    from quantviz.eval.apply import WeightCache
    from quantviz.eval.evaluate import evaluate
    from quantviz.eval.sweep_common import FLOAT, _ensure_baseline

    if data is None:
        raise ValueError("proxy: kl needs evaluation data (--data)")
    cache = cache if cache is not None else WeightCache()
    base = yield from _ensure_baseline(handle, data, baseline, batch_size)
    todo = [c for c in cands if c.spec is not None]
    out: Costs = {(c.fqn, c.label): 0.0 for c in cands if c.spec is None}
    for i, c in enumerate(todo):
        cfg = ModelConfig(default=FLOAT, overrides=((c.fqn, LayerConfig(weight=c.spec)),))
        r = yield from evaluate(
            handle,
            data,
            cfg,
            cache=cache,
            batch_size=batch_size,
            baseline=base,
            name=f"{c.fqn} {c.label}",
            progress_point=(i, len(todo)),
        )
        out[(c.fqn, c.label)] = max(float(r.kl or 0.0), 0.0)
    return out


def _from_proxies(name: str) -> ProxyFn:
    """A proxy of :mod:`quantviz.eval.proxies` (``{(fqn, spec): cost}`` over
    ``(fqn, spec)`` pairs) on this module's candidates (kept float: cost 0)."""

    def proxy(
        handle: ModelHandle,
        data: EvalData | None,
        cands: Sequence[Candidate],
        *,
        cache: WeightCache | None = None,
        **_: Any,
    ) -> Generator[Any, None, Costs]:
        from quantviz.eval import proxies

        if data is None:
            raise ValueError(f"proxy: {name} needs evaluation data (--data)")
        out: Costs = {(c.fqn, c.label): 0.0 for c in cands if c.spec is None}
        pairs = [(c.fqn, c.spec) for c in cands if c.spec is not None]
        if pairs:
            got = yield from proxies.PROXIES[name](handle, data, pairs, cache=cache)
            for c in cands:
                if c.spec is not None:
                    out[(c.fqn, c.label)] = float(got[(c.fqn, c.spec)])
        return out

    proxy.__name__ = f"{name}_proxy"
    proxy.__doc__ = f"The ``{name}`` proxy of :mod:`quantviz.eval.proxies`."
    return proxy


#: name -> proxy function; ``None`` marks a proxy that is not available (yet)
PROXIES: dict[str, ProxyFn | None] = {
    "mse": mse_proxy,
    "kl": kl_proxy,
    "hessian": _from_proxies("hessian"),
    "fisher": _from_proxies("fisher"),
}
#: proxies that take the shared cache / baseline / batch size
_TAKES_CONTEXT = {"kl", "mse", "hessian", "fisher"}


def proxy_function(name: str) -> ProxyFn:
    """The registered proxy ``name``; ``ValueError`` naming it when unknown or unavailable."""
    if name not in PROXIES:
        raise ValueError(f"--proxy: must be one of {', '.join(PROXIES)}, got {name!r}")
    fn = PROXIES[name]
    if fn is None:
        raise ValueError(
            f"--proxy: {name} is not available yet in this build (available: "
            f"{', '.join(k for k, v in PROXIES.items() if v is not None)})"
        )
    return fn


# -- the table and its solutions ----------------------------------------------------------
@dataclass
class MixedSolution:
    """An assignment (layer -> scheme label) and what it costs."""

    assignment: dict[str, str]
    objective: float
    model_bytes: float
    weight_bytes: float
    bops: int
    budget: Budget
    budget_bytes: float | None
    budget_bops: float | None
    config: ModelConfig


@dataclass
class CostTable:
    """Every candidate with its proxy cost, and the sizes the budgets are measured against."""

    proxy: str
    fqns: list[str]
    candidates: list[Candidate]
    costs: Costs
    fixed_bytes: float
    float_bytes: float
    weights: int
    _index: dict[str, list[Candidate]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {f: [] for f in self.fqns}
        for c in self.candidates:
            self._index[c.fqn].append(c)

    def cost(self, c: Candidate) -> float:
        return self.costs[(c.fqn, c.label)]

    def options(self, resource: str = "bytes") -> list[list[tuple[float, float]]]:
        """Per layer, ``(resource, cost)`` of its candidates (``bytes`` or ``bops``)."""
        return [
            [
                (float(c.bytes if resource == "bytes" else c.bops), self.cost(c))
                for c in self._index[f]
            ]
            for f in self.fqns
        ]

    def layer_candidates(self, fqn: str) -> list[Candidate]:
        return list(self._index[fqn])

    def budget_resource(self, budget: Budget) -> tuple[str, float, float | None]:
        """``(resource, bound on the chosen resources, budget in model bytes or None)``."""
        if budget.kind == "bops":
            return "bops", budget.value, None
        if budget.kind == "fraction":
            total = budget.value * self.float_bytes
        elif budget.kind == "bpw":
            total = self.fixed_bytes + budget.value * self.weights / 8
        else:
            total = budget.value
        return "bytes", total - self.fixed_bytes, total

    def choice_solution(self, ch: Choice, budget: Budget) -> MixedSolution:
        _, _, total = self.budget_resource(budget)
        picked = [self._index[f][j] for f, j in zip(self.fqns, ch.picks)]
        return MixedSolution(
            assignment={c.fqn: c.label for c in picked},
            objective=float(sum(self.cost(c) for c in picked)),
            model_bytes=self.fixed_bytes + sum(c.bytes for c in picked),
            weight_bytes=float(sum(c.bytes for c in picked)),
            bops=int(sum(c.bops for c in picked)),
            budget=budget,
            budget_bytes=total,
            budget_bops=budget.value if budget.kind == "bops" else None,
            config=config_of_assignment({c.fqn: c.spec for c in picked}),
        )

    def smallest(self, resource: str = "bytes") -> float:
        return sum(min(r for r, _ in opts) for opts in self.options(resource))

    def solve(self, budget: Budget, solver: str = "exact") -> MixedSolution:
        """The assignment under ``budget``; ``ValueError`` naming ``--budget`` if none fits."""
        resource, bound, _ = self.budget_resource(budget)
        ch = solve(self.options(resource), bound, solver)
        if ch is None:
            least = self.smallest(resource)
            need = (
                f"{least:.4g} BOPs" if resource == "bops" else human_bytes(least + self.fixed_bytes)
            )
            raise ValueError(
                f"--budget: {budget.text} is below the smallest model these choices allow ({need})"
            )
        return self.choice_solution(ch, budget)

    def front(self, resource: str = "bytes", max_points: int = 200_000) -> list[Choice]:
        """The exact Pareto front of total cost vs chosen resource (see
        :func:`quantviz.core.mckp.front`)."""
        return front(self.options(resource), max_points=max_points)

    def to_dict(self, sol: MixedSolution, solver: str) -> dict[str, Any]:
        """The ``quantviz mixed --json`` document."""
        return json_safe(
            {
                "proxy": self.proxy,
                "solver": solver,
                "budget": sol.budget.text,
                "budget_kind": sol.budget.kind,
                "budget_bytes": sol.budget_bytes,
                "budget_bops": sol.budget_bops,
                "fixed_bytes": self.fixed_bytes,
                "float_bytes": self.float_bytes,
                "model_bytes": sol.model_bytes,
                "weights": self.weights,
                "bits_per_weight": 8 * sol.weight_bytes / max(self.weights, 1),
                "bops": sol.bops,
                "objective": sol.objective,
                "assignment": sol.assignment,
                "candidates": [
                    {
                        "layer": c.fqn,
                        "scheme": c.label,
                        "bytes": c.bytes,
                        "bops": c.bops,
                        "cost": self.cost(c),
                    }
                    for c in self.candidates
                ],
            }
        )


def config_of_assignment(specs: Mapping[str, QuantSpec | None]) -> ModelConfig:
    """A ``ModelConfig`` keeping every layer float except the given weight specs."""
    from quantviz.core.defaults import FLOAT_CONFIG

    return ModelConfig(
        default=FLOAT_CONFIG.default,
        overrides=tuple((f, LayerConfig(weight=s)) for f, s in specs.items() if s is not None),
    )


def cost_table(
    handle: ModelHandle,
    data: EvalData | None,
    schemes: Sequence[Scheme],
    proxy: str = "mse",
    *,
    cache: WeightCache | None = None,
    baseline: Baseline | None = None,
    batch_size: int = 256,
) -> Generator[Any, None, CostTable]:
    """Measure ``proxy`` for every candidate of ``schemes`` on ``handle``; a generator that
    yields the proxy's progress and returns a :class:`CostTable`. Closing it stops the work."""
    fn = proxy_function(proxy)
    cands = candidates(handle, schemes)
    if proxy in _TAKES_CONTEXT:
        gen = fn(handle, data, cands, cache=cache, baseline=baseline, batch_size=batch_size)
    else:
        gen = fn(handle, data, cands)
    try:
        costs = yield from gen
    finally:
        gen.close()
    missing = [(c.fqn, c.label) for c in cands if (c.fqn, c.label) not in costs]
    if missing:
        f, lab = missing[0]
        raise ValueError(f"proxy {proxy}: no cost for layer {f} under {lab}")
    wb = _weight_bytes(handle)
    weights = sum(lay.weight_numel for lay in handle.layers)
    float_total = float(handle.float_bytes)
    fixed = max(float_total - weights * wb, 0.0)
    return CostTable(
        proxy=proxy,
        fqns=list(handle.fqns),
        candidates=cands,
        costs={k: float(v) for k, v in costs.items()},
        fixed_bytes=fixed,
        float_bytes=float_total,
        weights=weights,
    )
