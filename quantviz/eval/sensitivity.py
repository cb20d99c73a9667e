"""Each layer alone quantized, the rest float: the metric drop and output KL per layer."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.core.memory import layer_bytes
from quantviz.eval.apply import WeightCache
from quantviz.eval.evaluate import (
    _weight_dtype_bytes,
    evaluate,
)
from quantviz.eval.points import PointExecutor, PointFailed
from quantviz.eval.results import Baseline, EvalResult, PointDone, json_safe, metric_drop

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.handle import ModelHandle
from quantviz.eval.sweep_common import (
    DEFAULT_SPEC,
    FLOAT,
    Event,
    _check_spec,
    _ensure_baseline,
    parse_bits,
)

__all__ = ["LayerSensitivity", "SensitivityResult", "sensitivity"]


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
    ``errors`` lists the measurements that failed on a cluster (``{"index", "name",
    "error", "fqn", "bits"}``); their layers are left out of ``layers``.
    A drop is positive when the metric got worse: accuracy fell, or perplexity rose
    (``higher_is_better`` False).
    """

    metric: str
    baseline: float
    bits: tuple[int, ...]
    spec: QuantSpec
    layers: list[LayerSensitivity]
    errors: list[dict[str, Any]] = field(default_factory=list)
    higher_is_better: bool = True

    def layer(self, fqn: str) -> LayerSensitivity:
        for ls in self.layers:
            if ls.fqn == fqn:
                return ls
        raise KeyError(f"no sensitivity for layer {fqn!r}")

    def _drop(self, ls: LayerSensitivity, b: int) -> float:
        return metric_drop(self.baseline, ls.value[b], self.higher_is_better)

    def drop(self, fqn: str, bits: int | None = None) -> float:
        b = self.bits[0] if bits is None else bits
        return self._drop(self.layer(fqn), b)

    def by_drop(self, bits: int | None = None) -> list[str]:
        b = self.bits[0] if bits is None else bits
        return [ls.fqn for ls in sorted(self.layers, key=lambda s: (-self._drop(s, b), -s.kl[b]))]

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
        doc = json_safe(
            {
                "metric": self.metric,
                "higher_is_better": self.higher_is_better,
                "baseline": self.baseline,
                "bits": list(self.bits),
                "scheme": self.spec.with_(bits=b).short(),
                "layers": [
                    {
                        "fqn": ls.fqn,
                        "params": ls.params,
                        "value": ls.value[b],
                        "drop": self._drop(ls, b),
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
        if self.errors:
            doc["errors"] = json_safe([dict(e) for e in self.errors])
        return doc


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
    transforms: Iterable[Any] = (),
    executor: PointExecutor | None = None,
) -> Generator[Event, None, SensitivityResult]:
    """Each layer's weights alone at ``spec`` with each of ``bits``, the rest float.

    ``layers`` restricts the layers measured (default: all). ``previous`` (same spec) is
    extended: measurements it already holds are not repeated. Yields a :class:`PointDone`
    per (layer, width); returns a :class:`SensitivityResult`. ``executor`` (e.g. a
    :class:`quantviz.eval.cluster.Cluster`) evaluates the measurements elsewhere, in any
    order; one that fails is an entry of ``errors`` and its layer is left out.
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

    def record(ls: LayerSensitivity, b: int, r: EvalResult) -> None:
        ls.value[b] = r.value
        ls.kl[b] = float(r.kl or 0.0)
        ls.sqnr_db[b] = next(lay["weight_sqnr_db"] for lay in r.layers if lay["fqn"] == ls.fqn)
        ls.bytes[b] = layer_bytes(
            handle.layer(ls.fqn), LayerConfig(weight=spec.with_(bits=b)), weight_dtype_bytes=w_bytes
        )

    def point(ls: LayerSensitivity, b: int) -> tuple[str, ModelConfig]:
        s = spec.with_(bits=b)
        cfg = ModelConfig(
            default=FLOAT,
            overrides=((ls.fqn, LayerConfig(weight=s)),),
            transforms=tuple(transforms),
        )
        return f"{ls.fqn} W{s.short()}", cfg

    errors: list[dict[str, Any]] = []
    if executor is not None:
        outcomes = yield from executor.run(
            handle,
            data,
            [point(ls, b) for ls, b in todo],
            baseline=base,
            stats={},
            batch_size=batch_size,
        )
        for (ls, b), o in zip(todo, outcomes):
            if isinstance(o, EvalResult):
                record(ls, b, o)
            elif isinstance(o, PointFailed):
                errors.append({**o.to_dict(), "fqn": ls.fqn, "bits": b})
        failed = {e["fqn"] for e in errors}
        out = [ls for ls in out if ls.fqn not in failed]
    for i, (ls, b) in enumerate(todo if executor is None else ()):
        name, cfg = point(ls, b)
        r = yield from evaluate(
            handle,
            data,
            cfg,
            cache=cache,
            batch_size=batch_size,
            baseline=base,
            name=name,
            progress_point=(i, len(todo)),
        )
        record(ls, b, r)
        yield PointDone(r, i, len(todo))
    all_bits = tuple(dict.fromkeys((*widths, *(previous.bits if known and previous else ()))))
    return SensitivityResult(
        base.metric,
        base.value,
        all_bits,
        spec,
        out,
        errors,
        higher_is_better=base.higher_is_better,
    )
