"""Per-layer weight SQNR under any spec: the one store every view and result reads.

The table is filled from three sources, all computed by core code: the histogram view's
:func:`~quantviz.core.layer_view.layer_view` (the selected layer), :func:`compute_sqnr` (every
other layer, run in a worker) and evaluation results (their per-layer ``weight_sqnr_db``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from psygnal import Signal

from quantviz.core.spec import ModelConfig, QuantSpec

__all__ = ["SqnrTable", "compute_sqnr"]


#: one SQNR to compute: ``(fqn, spec)`` on the loaded weights, or ``(fqn, spec, tag)`` on
#: the fine-tuned weights with that tag (:class:`quantviz.session.TunedWeights`)
Todo = tuple[Any, ...]


class SqnrTable:
    """``(fqn, weight spec[, weights tag]) -> SQNR dB``; ``changed(tuple_of_fqns)`` after
    new values.

    ``get`` is ``inf`` for a float weight (no error), ``nan`` where the spec cannot apply to
    the layer (a group size that does not divide its rows) and ``None`` while unknown. The
    tag is ``""`` for the loaded weights and a :class:`quantviz.session.TunedWeights` tag for
    a fine-tuned configuration's: the same scheme on other weights is another number.
    Reads and writes are thread-safe; emit only from the GUI thread (``record``).
    """

    changed = Signal(tuple)

    def __init__(self) -> None:
        self._d: dict[tuple[str, QuantSpec, str], float] = {}
        self._lock = threading.Lock()

    def get(self, fqn: str, spec: QuantSpec | None, tag: str = "") -> float | None:
        if spec is None:
            return math.inf
        with self._lock:
            return self._d.get((fqn, spec, tag))

    def missing(
        self, fqns: Iterable[str], configs: Iterable[ModelConfig], tag: str = ""
    ) -> list[Todo]:
        """``(fqn, spec)`` pairs (``(fqn, spec, tag)`` for a tag) of ``configs`` (over
        layers ``fqns``) not known yet."""
        names = list(fqns)
        out: list[Todo] = []
        seen: set[tuple[str, QuantSpec, str]] = set()
        with self._lock:
            for cfg in configs:
                for fqn in names:
                    spec = cfg.resolve(fqn).weight
                    if spec is None:
                        continue
                    key = (fqn, spec, tag)
                    if key not in self._d and key not in seen:
                        seen.add(key)
                        out.append((fqn, spec, tag) if tag else (fqn, spec))
        return out

    def record(self, items: Iterable[tuple[Any, ...]]) -> None:
        """Store ``(fqn, spec, sqnr_db)`` items (``(fqn, spec, sqnr_db, tag)`` for tuned
        weights); emits ``changed`` with the layers that moved."""
        moved: list[str] = []
        with self._lock:
            for item in items:
                fqn, spec, value = item[:3]
                tag = item[3] if len(item) > 3 else ""
                if spec is None:
                    continue
                v = float(value)
                old = self._d.get((fqn, spec, tag))
                if old is None or not (old == v or (math.isnan(old) and math.isnan(v))):
                    self._d[(fqn, spec, tag)] = v
                    moved.append(fqn)
        if moved:
            self.changed.emit(tuple(dict.fromkeys(moved)))

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def __len__(self) -> int:
        return len(self._d)


def compute_sqnr(
    weights: Mapping[str, Any],
    todo: Iterable[Todo],
    tuned: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Generator: the weight SQNR of each ``(fqn, spec)`` in ``todo`` (nan where the spec
    cannot apply to the layer), as ``(fqn, spec, sqnr)``; an item ``(fqn, spec, tag)`` is
    measured on ``tuned[tag]`` (fqn -> weight) and yields ``(fqn, spec, sqnr, tag)``.
    Pure: safe in a worker thread."""
    from quantviz.core import quantize

    for item in todo:
        fqn, spec = item[0], item[1]
        tag = item[2] if len(item) > 2 else ""
        w = (tuned or {})[tag][fqn] if tag else weights[fqn]
        try:
            sq = quantize(w, spec).sqnr_db
        except ValueError:
            sq = math.nan  # e.g. a group size that does not divide this layer's rows
        yield (fqn, spec, sq, tag) if tag else (fqn, spec, sq)
