"""What the compare view shows, computed without Qt.

Given the session and the controller (:class:`~quantviz.app.controller.AppController`) and
the names of the compared configurations, :func:`compare_state` returns one frozen
:class:`CompareState`: a :class:`LayerRow` per quantizable layer (each configuration's
scheme and weight SQNR, and whether the configurations differ on that layer: the *diff
rows*), a :class:`MetricsRow` per configuration (its latest result's metric, drop vs float
and BOPs, its size and compression, and whether that result is *stale*), the copy actions
available for a layer and the bar heights of the per-layer SQNR chart.

:class:`CompareModel` keeps which configurations are compared (the only state the compare
view has) and follows the session: deleted configurations drop out, and an empty choice
starts at the current configuration and the next two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quantviz.core.spec import LayerConfig, QuantSpec
from quantviz.core.units import human_bytes
from quantviz.session import ResultEntry, Session

if TYPE_CHECKING:
    from quantviz.app.controller import AppController

__all__ = [
    "BarChart",
    "CompareModel",
    "CompareState",
    "CopyAction",
    "LayerRow",
    "MetricsRow",
    "bar_chart",
    "compare_state",
    "copy_actions",
    "latest_entry",
    "layer_rows",
    "metrics_row",
    "ops_text",
    "scheme_text",
    "sqnr_text",
]

#: the bar height of an exact (inf dB) quantization when no finite SQNR is known
DEFAULT_BAR_CAP = 50.0


# ----------------------------------------------------------------------------------------
# texts
# ----------------------------------------------------------------------------------------
def scheme_text(cfg: LayerConfig) -> str:
    """``W4 kmeans ch`` (plus ``· A8 sym t`` when the input activation is quantized)."""
    w = f"W{cfg.weight.short()}" if cfg.weight is not None else "float"
    if cfg.activation is not None:
        w += f" · A{cfg.activation.short()}"
    return w


def sqnr_text(v: float | None, kept_float: bool = False) -> str:
    """A weight SQNR cell: ``float``, ``…`` (not known yet), ``∞ exact``, ``invalid`` (the
    scheme cannot apply to the layer) or the dB value with one decimal."""
    if kept_float:
        return "float"
    if v is None:
        return "…"
    if math.isinf(v):
        return "∞ exact"
    if math.isnan(v):
        return "invalid"
    return f"{v:.1f}"


def ops_text(n: float) -> str:
    """Bit operations in SI units: ``1.23 GBOPs``."""
    for unit, f in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= f:
            return f"{n / f:.3g} {unit}BOPs"
    return f"{n:.0f} BOPs"


# ----------------------------------------------------------------------------------------
# per-layer rows and copies
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerRow:
    """Layer ``fqn`` under each compared configuration (same order as the names)."""

    fqn: str
    configs: tuple[LayerConfig, ...]
    sqnr: tuple[float | None, ...]

    @property
    def schemes(self) -> tuple[str, ...]:
        return tuple(scheme_text(c) for c in self.configs)

    @property
    def kept_float(self) -> tuple[bool, ...]:
        return tuple(c.weight is None for c in self.configs)

    @property
    def sqnr_texts(self) -> tuple[str, ...]:
        return tuple(sqnr_text(v, f) for v, f in zip(self.sqnr, self.kept_float, strict=True))

    @property
    def differs(self) -> bool:
        """The compared configurations do not all set this layer the same way."""
        return len(set(self.configs)) > 1


def layer_rows(
    session: Session, controller: AppController, names: Sequence[str]
) -> tuple[LayerRow, ...]:
    """One :class:`LayerRow` per quantizable layer, in the model's order."""
    cfgs = [session.configs[n] for n in names]
    rows = []
    for fqn in session.fqns:
        layer = tuple(c.resolve(fqn) for c in cfgs)
        sq = tuple(
            controller.sqnr_under(fqn, lc.weight, n) for n, lc in zip(names, layer, strict=True)
        )
        rows.append(LayerRow(fqn, layer, sq))
    return tuple(rows)


@dataclass(frozen=True)
class CopyAction:
    """Copy layer ``fqn``'s setting from configuration ``source`` to ``target``."""

    fqn: str
    source: str
    target: str

    @property
    def text(self) -> str:
        return f"Copy {self.fqn} from {self.source} to {self.target}"


def copy_actions(session: Session, names: Sequence[str], fqn: str) -> list[CopyAction]:
    """Every ordered pair of ``names`` whose setting of layer ``fqn`` differs."""
    if fqn not in session.fqns:
        raise ValueError(f"layer: no quantizable layer named {fqn!r}")
    res = {n: session.configs[n].resolve(fqn) for n in names}
    return [CopyAction(fqn, a, b) for a in names for b in names if a != b and res[a] != res[b]]


# ----------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------
def latest_entry(entries: Sequence[ResultEntry]) -> ResultEntry | None:
    """The latest plain evaluation among ``entries`` (else the latest of any series)."""
    evals = [e for e in entries if e.series == "evaluations"]
    pick = evals or list(entries)
    return pick[-1] if pick else None


@dataclass(frozen=True)
class MetricsRow:
    """Configuration ``name``: its size (known without evaluating) and its latest result.

    ``stale`` is true when there is no result or the result's configuration differs from the
    configuration's current content (``edited``: there is one, but it was edited since).
    ``size_error`` says why the size is unknown (a scheme that cannot apply to a layer).
    """

    name: str
    entry: ResultEntry | None
    edited: bool
    size_bytes: float | None = None
    float_bytes: float | None = None
    size_error: str = ""

    @property
    def stale(self) -> bool:
        return self.entry is None or self.edited

    @property
    def metric(self) -> str | None:
        return None if self.entry is None else str(self.entry.result.metric)

    @property
    def value(self) -> float | None:
        return None if self.entry is None else float(self.entry.result.value)

    @property
    def drop(self) -> float | None:
        """How much worse than float (positive: worse; perplexity counts upward)."""
        if self.entry is None:
            return None
        r = self.entry.result
        from quantviz.eval.results import metric_drop

        return metric_drop(
            float(r.baseline), float(r.value), bool(getattr(r, "higher_is_better", True))
        )

    @property
    def bops(self) -> float | None:
        b = None if self.entry is None else getattr(self.entry.result, "bops", None)
        return float(b) if b else None

    @property
    def compression(self) -> float | None:
        if not self.size_bytes or self.float_bytes is None:
            return None
        return self.float_bytes / self.size_bytes

    def texts(self) -> tuple[str, str, str, str, str, str]:
        """The cells ``(name, metric, drop, size, compression, BOPs)``."""
        if self.entry is None:
            metric, drop = "not evaluated", ""
        else:
            metric = f"{(self.metric or '').replace('_', ' ')} {self.value:.4f}"
            if self.edited:
                metric += "  (stale: edited since)"
            drop = f"{self.drop:+.4f}"
        if self.size_error:
            size, comp = f"invalid: {self.size_error}", ""
        else:
            size = "" if self.size_bytes is None else human_bytes(self.size_bytes)
            c = self.compression
            comp = "" if c is None else f"{c:.2f}×"
        bops = "" if self.bops is None else ops_text(self.bops)
        return (self.name, metric, drop, size, comp, bops)

    def tooltip(self) -> str:
        if self.entry is None:
            return f"No evaluation of {self.name} yet"
        if self.edited:
            return f"Stale: {self.name} was edited since this evaluation (re-evaluate it)"
        return ""


def metrics_row(session: Session, name: str) -> MetricsRow:
    """The :class:`MetricsRow` of configuration ``name``."""
    cfg = session.configs[name]
    e = latest_entry(session.results_for(name))
    size = fl = None
    err = ""
    if session.handle is not None:
        from quantviz.eval import size_of

        try:
            size, fl = size_of(session.handle, cfg)
        except ValueError as exc:
            err = str(exc)
    return MetricsRow(name, e, e is not None and e.config != cfg, size, fl, err)


# ----------------------------------------------------------------------------------------
# the bar chart
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BarChart:
    """Bar heights of the per-layer SQNR chart, one series per configuration.

    Unknown, invalid (nan) and float layers get height 0 (no bar); exact ones (inf dB)
    reach ``cap`` (1.1 × the largest finite SQNR). ``ymin`` is the lowest value to show.
    """

    fqns: tuple[str, ...]
    heights: dict[str, tuple[float, ...]]
    cap: float
    ymin: float


def bar_chart(rows: Sequence[LayerRow], names: Sequence[str]) -> BarChart:
    finite = [v for r in rows for v in r.sqnr if v is not None and math.isfinite(v)]
    cap = 1.1 * max(finite, default=DEFAULT_BAR_CAP)
    heights: dict[str, tuple[float, ...]] = {}
    for i, n in enumerate(names):
        hs = []
        for r in rows:
            v, fl = r.sqnr[i], r.kept_float[i]
            if v is not None and math.isinf(v) and not fl:
                hs.append(cap)
            else:
                hs.append(v if v is not None and math.isfinite(v) else 0.0)
        heights[n] = tuple(hs)
    return BarChart(tuple(r.fqn for r in rows), heights, cap, min([0.0, *finite]))


# ----------------------------------------------------------------------------------------
# the whole state
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompareState:
    """Everything the compare view shows for the compared ``names``."""

    names: tuple[str, ...]
    layers: tuple[LayerRow, ...]
    metrics: tuple[MetricsRow, ...]
    bars: BarChart

    @property
    def diff_rows(self) -> frozenset[str]:
        return frozenset(r.fqn for r in self.layers if r.differs)

    @property
    def stale(self) -> tuple[str, ...]:
        """The compared configurations to (re-)evaluate, in order."""
        return tuple(m.name for m in self.metrics if m.stale)

    def row(self, fqn: str) -> LayerRow:
        for r in self.layers:
            if r.fqn == fqn:
                return r
        raise ValueError(f"layer: no quantizable layer named {fqn!r}")

    def metrics_of(self, name: str) -> MetricsRow:
        for m in self.metrics:
            if m.name == name:
                return m
        raise ValueError(f"config name: {name!r} is not compared")


def compare_state(controller: AppController, names: Sequence[str]) -> CompareState:
    """The :class:`CompareState` of configurations ``names`` (an unknown name is an error)."""
    s = controller.session
    unknown = [n for n in names if n not in s.configs]
    if unknown:
        raise ValueError(f"config name: no configuration named {', '.join(unknown)}")
    rows = layer_rows(s, controller, names)
    metrics = tuple(metrics_row(s, n) for n in names)
    return CompareState(tuple(names), rows, metrics, bar_chart(rows, names))


class CompareModel:
    """Which configurations are compared, over ``controller``'s session."""

    def __init__(self, controller: AppController) -> None:
        self.controller = controller
        self._checked: list[str] = []

    @property
    def session(self) -> Session:
        return self.controller.session

    def compared(self) -> list[str]:
        """The compared configuration names, in the session's order."""
        return [n for n in self.session.config_names if n in self._checked]

    def set_compared(self, names: Sequence[str]) -> None:
        """Compare ``names`` (unknown names are an error naming them; nothing changes)."""
        unknown = [n for n in names if n not in self.session.configs]
        if unknown:
            raise ValueError(f"config name: no configuration named {', '.join(unknown)}")
        self._checked = list(dict.fromkeys(names))

    def set_checked(self, name: str, on: bool) -> None:
        if on and name not in self._checked and name in self.session.configs:
            self._checked.append(name)
        elif not on and name in self._checked:
            self._checked.remove(name)

    def is_checked(self, name: str) -> bool:
        return name in self._checked

    def sync(self) -> None:
        """Drop deleted configurations; an empty choice becomes the current configuration
        and the next two."""
        s = self.session
        self._checked = [n for n in self._checked if n in s.configs]
        if not self._checked and s.configs:
            others = [n for n in s.config_names if n != s.current_name]
            self._checked = [s.current_name, *others[:2]]

    def reset(self) -> None:
        """A new model: start afresh (see :meth:`sync`)."""
        self._checked = []
        self.sync()

    def state(self) -> CompareState:
        return compare_state(self.controller, self.compared())

    def sqnr_todo(self) -> list[tuple[str, QuantSpec]]:
        """The ``(fqn, spec)`` weight SQNRs the compared configurations still need."""
        s = self.session
        if s.handle is None:
            return []
        return self.controller.sqnr_todo(names=self.compared())

    def copy_actions(self, fqn: str) -> list[CopyAction]:
        return copy_actions(self.session, self.compared(), fqn)

    def can_copy(self, fqn: str | None, source: str, target: str) -> bool:
        """Copying ``fqn`` from ``source`` to ``target`` would change ``target``."""
        s = self.session
        if not fqn or source == target or source not in s.configs or target not in s.configs:
            return False
        return s.configs[source].resolve(fqn) != s.configs[target].resolve(fqn)

    def layer_specs(self, fqn: str) -> list[tuple[str, Any]]:
        """``(name, weight spec)`` of layer ``fqn`` under each compared configuration."""
        s = self.session
        return [(n, s.configs[n].resolve(fqn).weight) for n in self.compared()]
