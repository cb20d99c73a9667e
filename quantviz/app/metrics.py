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


class SqnrTable:
    """``(fqn, weight spec) -> SQNR dB``; ``changed(tuple_of_fqns)`` after new values.

    ``get`` is ``inf`` for a float weight (no error), ``nan`` where the spec cannot apply to
    the layer (a group size that does not divide its rows) and ``None`` while unknown.
    Reads and writes are thread-safe; emit only from the GUI thread (``record``).
    """

    changed = Signal(tuple)

    def __init__(self) -> None:
        self._d: dict[tuple[str, QuantSpec], float] = {}
        self._lock = threading.Lock()

    def get(self, fqn: str, spec: QuantSpec | None) -> float | None:
        if spec is None:
            return math.inf
        with self._lock:
            return self._d.get((fqn, spec))

    def missing(
        self, fqns: Iterable[str], configs: Iterable[ModelConfig]
    ) -> list[tuple[str, QuantSpec]]:
        """``(fqn, spec)`` pairs of ``configs`` (over layers ``fqns``) not known yet."""
        names = list(fqns)
        out: list[tuple[str, QuantSpec]] = []
        seen: set[tuple[str, QuantSpec]] = set()
        with self._lock:
            for cfg in configs:
                for fqn in names:
                    spec = cfg.resolve(fqn).weight
                    key = (fqn, spec)
                    if spec is not None and key not in self._d and key not in seen:
                        seen.add(key)  # type: ignore[arg-type]
                        out.append((fqn, spec))
        return out

    def record(self, items: Iterable[tuple[str, QuantSpec | None, float]]) -> None:
        """Store ``(fqn, spec, sqnr_db)`` items; emits ``changed`` with the layers that moved."""
        moved: list[str] = []
        with self._lock:
            for fqn, spec, value in items:
                if spec is None:
                    continue
                v = float(value)
                old = self._d.get((fqn, spec))
                if old is None or not (old == v or (math.isnan(old) and math.isnan(v))):
                    self._d[(fqn, spec)] = v
                    moved.append(fqn)
        if moved:
            self.changed.emit(tuple(dict.fromkeys(moved)))

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def __len__(self) -> int:
        return len(self._d)


def compute_sqnr(
    weights: Mapping[str, Any], todo: Iterable[tuple[str, QuantSpec]]
) -> Iterator[tuple[str, QuantSpec, float]]:
    """Generator: the weight SQNR of each ``(fqn, spec)`` in ``todo`` (nan where the spec
    cannot apply to the layer). Pure: safe in a worker thread."""
    from quantviz.core import quantize

    for fqn, spec in todo:
        try:
            sq = quantize(weights[fqn], spec).sqnr_db
        except ValueError:
            sq = math.nan  # e.g. a group size that does not divide this layer's rows
        yield fqn, spec, sq
