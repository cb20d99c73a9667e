"""A sweep over bit-widths per method: one uniform sweep (one curve) for each method.

:func:`methods_sweep` runs :func:`~quantviz.eval.uniform_sweep.uniform_sweep` once per
:class:`~quantviz.core.methods.Method` (its transforms, and its rounding on the base spec),
sharing one float baseline, calibration statistics and weight cache. Its progress covers
every point of every method (``point`` of ``points``, never decreasing). A method that does
not apply to the model (CLE on a transformer, GPTQ on a non-uniform quantizer, hadamard
without a power-of-two width ...) is skipped: a :class:`MethodSkipped` event names it and
the reason, and the other methods run.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.core.methods import Method
from quantviz.eval.apply import WeightCache, check_config
from quantviz.eval.points import PointExecutor
from quantviz.eval.results import Baseline, PointDone, Progress
from quantviz.eval.sweep_common import _ensure_baseline, parse_bits
from quantviz.eval.uniform_sweep import SweepResult, uniform_sweep

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = ["MethodSkipped", "MethodsSweepResult", "method_config", "methods_sweep"]


@dataclass(frozen=True)
class MethodSkipped:
    """``method`` does not apply to the model: ``reason`` says why (its sweep is left out)."""

    method: Method
    reason: str


@dataclass
class MethodsSweepResult:
    """One :class:`SweepResult` per method that ran (in the order given) and the skipped
    methods with their reasons."""

    runs: list[tuple[Method, SweepResult]] = field(default_factory=list)
    skipped: list[MethodSkipped] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """``series``: per method that ran its ``method`` label, the ``transforms`` it used
        with every parameter (``[{"smoothquant": {"alpha": 0.8}}]``), its ``rounding`` and
        its sweep; ``skipped``: the same names with the ``reason``."""
        return {
            "kind": "methods",
            "series": [{**_method_dict(m), **r.to_dict()} for m, r in self.runs],
            "skipped": [{**_method_dict(s.method), "reason": s.reason} for s in self.skipped],
        }


def _method_dict(m: Method) -> dict[str, Any]:
    return {"method": m.label, "transforms": m.params_dict(), "rounding": m.rounding}


def method_config(
    method: Method, spec: QuantSpec, bits: int, activation: QuantSpec | None = None
) -> ModelConfig:
    """The configuration of ``method``'s point at ``bits``: every layer's weights at ``spec``
    with the method's rounding, ``activation`` on every input, the method's transforms.
    ``ValueError`` when the rounding cannot apply to ``spec`` (a non-uniform quantizer)."""
    return ModelConfig(
        default=LayerConfig(
            weight=spec.with_(bits=bits, rounding=method.rounding), activation=activation
        ),
        transforms=method.transforms,
    )


def _relay(
    gen: Generator[Any, None, Any], run: int, widths: int, points: int
) -> Generator[Any, None, Any]:
    """Relay one method's sweep as run ``run`` of the job: its points (progress and
    :class:`PointDone`) are ``run * widths + i`` of ``points``."""
    try:
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            if isinstance(item, Progress):
                item = replace(item, point=run * widths + item.point, points=points)
            elif isinstance(item, PointDone):  # counted over every method's points
                done = item.completed and run * widths + item.completed
                item = replace(item, index=run * widths + item.index, total=points, completed=done)
            yield item
    finally:
        gen.close()


def methods_sweep(
    handle: ModelHandle,
    data: EvalData,
    bits: int | str | Iterable[int],
    spec: QuantSpec,
    methods: Iterable[Method],
    *,
    activation: QuantSpec | None = None,
    stats: MutableMapping[str, LayerStats] | None = None,
    cache: WeightCache | None = None,
    batch_size: int = 256,
    baseline: Baseline | None = None,
    executor: PointExecutor | None = None,
) -> Generator[Any, None, MethodsSweepResult]:
    """Every layer at ``spec`` at each of ``bits``, once per method (see the module doc).

    Yields :class:`Progress` (``point`` of ``points`` over every method's points),
    :class:`PointDone` per point (its result's ``config`` names the method) and
    :class:`MethodSkipped`; returns a :class:`MethodsSweepResult`."""
    widths = parse_bits(bits)
    todo = list(methods)
    if not todo:
        raise ValueError("methods: no method given")
    cache = cache if cache is not None else WeightCache()
    base = yield from _ensure_baseline(handle, data, baseline, batch_size)
    out = MethodsSweepResult()
    points = len(todo) * len(widths)
    for k, m in enumerate(todo):
        try:  # shapes, the rounding's quantizer: refused before any work
            for b in widths:
                check_config(handle, method_config(m, spec, b, activation))
            gen = uniform_sweep(
                handle,
                data,
                widths,
                spec.with_(rounding=m.rounding),
                activation=activation,
                stats=stats,
                cache=cache,
                batch_size=batch_size,
                baseline=base,
                transforms=m.transforms,
                executor=executor,
            )
            res = yield from _relay(gen, k, len(widths), points)
        except ValueError as exc:  # a transform or rounding that cannot apply to this model
            skip = MethodSkipped(m, str(exc).splitlines()[0] if str(exc) else repr(exc))
            out.skipped.append(skip)
            yield skip
            yield Progress(1, 1, f"{m.label}: skipped", (k + 1) * len(widths) - 1, points)
            continue
        if res.errors and not res.points:  # on a cluster every point failed the same way
            skip = MethodSkipped(m, str(res.errors[0]["error"]))
            out.skipped.append(skip)
            yield skip
            yield Progress(1, 1, f"{m.label}: skipped", (k + 1) * len(widths) - 1, points)
            continue
        out.runs.append((m, res))
    return out
