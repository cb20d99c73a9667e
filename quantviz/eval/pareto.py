"""The Pareto front of evaluated configurations: the best metric for the fewest bytes.

"Best" follows the metric's direction: the highest accuracy, the lowest perplexity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["direction_of", "pareto"]

R = TypeVar("R")


def _get(r: Any, key: str) -> Any:
    return r.get(key) if isinstance(r, Mapping) else getattr(r, key, None)


def _coords(r: Any) -> tuple[float, float]:
    value, size = _get(r, "value"), _get(r, "model_bytes")
    if not isinstance(value, (int, float)) or not isinstance(size, (int, float)):
        raise ValueError(
            f"pareto: each result needs numeric 'value' and 'model_bytes', got {r!r:.80}"
        )
    if not (math.isfinite(value) and math.isfinite(size)):
        raise ValueError(f"pareto: non-finite value {value} or model_bytes {size}")
    return float(value), float(size)


def direction_of(r: Any) -> bool:
    """A result's direction: its ``higher_is_better`` (an ``EvalResult`` or a dict), else
    from its ``metric`` name (perplexity: lower is better), else higher is better."""
    flag = _get(r, "higher_is_better")
    if isinstance(flag, bool):
        return flag
    from quantviz.data.metrics import higher_is_better

    metric = _get(r, "metric")
    return higher_is_better(metric) if isinstance(metric, str) else True


def pareto(results: Iterable[R], higher_is_better: bool | None = None) -> list[R]:
    """The non-dominated results (best ``value``, minimise ``model_bytes``).

    Best is the largest ``value`` when ``higher_is_better`` (accuracy), the smallest when
    not (perplexity); ``None`` takes the direction from the results (:func:`direction_of`),
    which must agree. A result is dominated when another is at least as good in both and
    strictly better in one. Results are :class:`~quantviz.eval.EvalResult` objects or dicts
    with ``value`` and ``model_bytes``. Returned in order of increasing size; of exact
    duplicates the first is kept.
    """
    items = list(results)
    if higher_is_better is None:
        dirs = {direction_of(r) for r in items}
        if len(dirs) > 1:
            raise ValueError(
                "pareto: the results mix metrics where higher is better and lower is better"
            )
        higher_is_better = dirs.pop() if dirs else True
    sign = 1.0 if higher_is_better else -1.0
    keyed = sorted(
        ((sign * v, s, i) for i, (v, s) in ((i, _coords(r)) for i, r in enumerate(items))),
        key=lambda t: (t[1], -t[0], t[2]),
    )
    front: list[R] = []
    best = -math.inf
    for value, _size, i in keyed:
        if value > best:
            front.append(items[i])
            best = value
    return front
