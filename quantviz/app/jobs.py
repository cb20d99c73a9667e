"""A job: a recipe generator plus what to do with its items and its result.

The controller builds :class:`Job` objects; a front-end runs them. The GUI runs
``job.factory()`` in a worker thread and calls ``job.on_item`` / ``job.on_done`` on its own
thread; the CLI and the tests call :func:`run_job`, which does the same synchronously. A
recipe never changes the session itself: only ``on_item`` / ``on_done`` do, on the thread
that owns the session.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Job", "JobProgress", "drive", "overall_progress", "run_job"]


#: where each stage of one evaluation lies in its progress (from, to); a skipped stage is a
#: jump forward, never back
STAGE_SPAN: dict[str, tuple[float, float]] = {
    "load model": (0.0, 0.6),
    "load data": (0.6, 1.0),
    "check": (0.0, 0.02),
    "baseline": (0.02, 0.4),
    # transforms and rounding (quantviz.eval.transforms), each stage over this span
    **dict.fromkeys(
        (
            "fold_bn",
            "cle",
            "bias_correction",
            "smoothquant",
            "hadamard",
            "capture",
            "gptq",
            "adaround",
        ),
        (0.4, 0.45),
    ),
    "calibrate": (0.4, 0.5),
    "quantize": (0.5, 0.6),
    "forward": (0.6, 1.0),
}
#: the share of a multi-point job (sweep, sensitivity) its leading float baseline takes
BASELINE_SHARE = 0.1


@dataclass(frozen=True)
class JobProgress:
    """Progress of a whole job: ``fraction`` in [0, 1] over every stage and point (never
    decreasing), and the engine's ``stage`` with its ``done``/``total`` counts, ``point`` of
    ``points`` (what a progress bar prints)."""

    fraction: float
    stage: str
    done: int
    total: int
    point: int = 0
    points: int = 1


def overall_progress(gen: Any, *, multi_point: bool = False) -> Generator[Any, Any, Any]:
    """Relay ``gen``, turning its per-stage progress events into :class:`JobProgress` whose
    ``fraction`` covers the whole job; other items pass unchanged; returns its value."""
    best = 0.0
    try:
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            if hasattr(item, "running") and hasattr(item, "completed"):
                # points on a cluster (quantviz.eval.points.TasksStatus): pass it on, and
                # the share of the points finished as the job's progress
                yield item
                n = item.total or 1
                best = max(best, BASELINE_SHARE + (1 - BASELINE_SHARE) * item.completed / n)
                yield JobProgress(min(best, 1.0), "cluster", item.completed, n, item.completed, n)
                continue
            stage = getattr(item, "stage", None)
            done, total = getattr(item, "done", None), getattr(item, "total", None)
            if not (isinstance(stage, str) and isinstance(done, int) and isinstance(total, int)):
                yield item
                continue
            point, points = getattr(item, "point", 0), getattr(item, "points", 1) or 1
            a, b = STAGE_SPAN.get(stage.rsplit(": ", 1)[-1], (0.0, 1.0))
            inner = a + (b - a) * (done / total if total else 1.0)
            if multi_point and points == 1 and stage == "baseline":
                frac = BASELINE_SHARE * inner
            elif multi_point:
                frac = BASELINE_SHARE + (1 - BASELINE_SHARE) * (point + inner) / points
            else:
                frac = (point + inner) / points
            best = max(best, min(1.0, frac))
            yield JobProgress(best, stage, done, total, point, points)
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            close()


def _ignore(_: Any) -> None:
    return None


@dataclass
class Job:
    """``kind`` names the job (``evaluate``, ``uniform sweep`` ...), ``label`` is what a
    progress bar shows; ``factory()`` makes the generator (called in the worker thread)."""

    kind: str
    label: str
    factory: Callable[[], Iterator[Any] | Generator[Any, Any, Any]]
    on_done: Callable[[Any], Any] = _ignore
    on_item: Callable[[Any], Any] = _ignore
    meta: dict[str, Any] = field(default_factory=dict)


def drive(
    gen: Iterator[Any] | Generator[Any, Any, Any], on_item: Callable[[Any], Any] = _ignore
) -> Any:
    """Run ``gen`` to its end; every yielded item goes to ``on_item``; returns its value.

    The generator is closed however this ends (an exception, Ctrl-C), so its ``finally``
    blocks run (a model with swapped weights gets its float weights back).
    """
    try:
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            on_item(item)
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            close()


def run_job(job: Job, on_progress: Callable[[Any], Any] = _ignore) -> Any:
    """Run ``job`` synchronously (items to ``job.on_item`` and ``on_progress``); returns
    what ``job.on_done`` returns."""

    def item(x: Any) -> None:
        on_progress(x)
        job.on_item(x)

    return job.on_done(drive(job.factory(), item))
