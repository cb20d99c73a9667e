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

__all__ = ["Job", "drive", "run_job"]


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
