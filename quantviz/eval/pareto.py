"""The Pareto front of evaluated configurations: highest metric for the fewest bytes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["pareto"]

R = TypeVar("R")


def _coords(r: Any) -> tuple[float, float]:
    if isinstance(r, Mapping):
        value, size = r.get("value"), r.get("model_bytes")
    else:
        value, size = getattr(r, "value", None), getattr(r, "model_bytes", None)
    if not isinstance(value, (int, float)) or not isinstance(size, (int, float)):
        raise ValueError(
            f"pareto: each result needs numeric 'value' and 'model_bytes', got {r!r:.80}"
        )
    if not (math.isfinite(value) and math.isfinite(size)):
        raise ValueError(f"pareto: non-finite value {value} or model_bytes {size}")
    return float(value), float(size)


def pareto(results: Iterable[R]) -> list[R]:
    """The non-dominated results (maximise ``value``, minimise ``model_bytes``).

    A result is dominated when another is at least as good in both and strictly better in
    one. Results are :class:`~quantviz.eval.EvalResult` objects or dicts with ``value`` and
    ``model_bytes``. Returned in order of increasing size; of exact duplicates the first is
    kept.
    """
    items = list(results)
    keyed = sorted(
        ((*_coords(r), i) for i, r in enumerate(items)), key=lambda t: (t[1], -t[0], t[2])
    )
    front: list[R] = []
    best = -math.inf
    for value, _size, i in keyed:
        if value > best:
            front.append(items[i])
            best = value
    return front
