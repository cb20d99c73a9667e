"""Progress of the CLI's long runs on stderr, and driving the evaluation generators.

Per stage (``baseline``, ``calibrate``, ``quantize``, ``forward``), with counts and an
estimate of the time left; a stage's count only grows. On a terminal: one tqdm bar per
stage, replaced when the next stage starts. Anywhere else (a pipe, a log file): plain
lines — one when a stage (or, in a sweep, a point) finishes and at most one every
``interval`` seconds while a stage runs — never a carriage-return bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Generator
from typing import IO, Any, TypeVar

__all__ = ["ProgressReporter", "drive"]

T = TypeVar("T")


def _secs(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(round(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class ProgressReporter:
    """Receives the generators' ``Progress`` / ``PointDone`` events and shows them.

    ``tty`` defaults to ``stream.isatty()``; ``enabled=False`` shows nothing.
    """

    def __init__(
        self,
        label: str,
        *,
        stream: IO[str] | None = None,
        enabled: bool = True,
        tty: bool | None = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        bar_interval: float = 0.1,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty()) if tty is None and callable(isatty) else bool(tty)
        self.interval = interval
        self.clock = clock
        self.bar_interval = bar_interval
        self._t_last = clock()  # a stage starts when the previous event arrived
        self._key: tuple[int, str] | None = None
        self._done = 0
        self._t_stage = 0.0
        self._t_line = 0.0
        self._t_first_point: float | None = None
        self._bar: Any = None
        self._announced = False  # a cluster's tasks were reported as submitted

    # -- events ---------------------------------------------------------------------------
    def __call__(self, ev: Any) -> None:
        if not self.enabled:
            return
        from quantviz.eval.points import PointFailed, PointRetried, TasksStatus
        from quantviz.eval.results import PointDone, Progress

        if isinstance(ev, Progress):
            self._progress(ev)
        elif isinstance(ev, PointDone):
            self._point(ev)
        elif isinstance(ev, TasksStatus):
            self._status(ev)
        elif isinstance(ev, PointFailed):
            self._finish_bar()
            self._say(f"{self.label}: {ev.completed}/{ev.total} failed ({ev.name}): {ev.error}")
        elif isinstance(ev, PointRetried):
            self._finish_bar()
            self._say(
                f"{self.label}: {ev.name}: its worker died; recomputed (attempt {ev.attempts})"
            )

    def _say(self, text: str) -> None:
        if self.tty:
            self.stream.write(text + "\n")
            self.stream.flush()
        else:
            self._line(text)

    def _status(self, ev: Any) -> None:
        """Tasks on a cluster: a bar of finished points with running / waiting counts (a
        line when they are submitted, then at most one every ``interval`` s, off a tty)."""
        now = self.clock()
        if self._t_first_point is None:
            self._t_first_point = now
        if self.tty:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=ev.total,
                    desc=f"{self.label} on the cluster",
                    file=self.stream,
                    leave=False,
                    dynamic_ncols=True,
                    mininterval=self.bar_interval,
                    bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| [{elapsed}<{remaining}"
                    "{postfix}]",
                )
            self._bar.update(ev.completed - self._bar.n)
            self._bar.set_postfix_str(f"{ev.running} running, {ev.waiting} waiting")
            return
        if not self._announced:
            self._announced = True
            self._line(f"{self.label}: {ev.total} tasks submitted ({ev.text()})")
        elif now - self._t_line >= self.interval and ev.completed < ev.total:
            self._line(f"{self.label}: {ev.text()}")

    def _stage_name(self, ev: Any) -> str:
        if ev.points > 1:
            return f"{self.label} {ev.point + 1}/{ev.points} {ev.stage}"
        return f"{self.label} {ev.stage}"

    def _progress(self, ev: Any) -> None:
        now = self.clock()
        key = (ev.point, ev.stage)
        if key != self._key:
            self._finish_bar()
            start = self._t_last
            self._key, self._done, self._t_stage, self._t_line = key, 0, start, start
            if self._t_first_point is None and ev.points > 1 and ev.stage != "baseline":
                self._t_first_point = start  # a sweep's ETA: from its first point on
            if self.tty:
                self._open_bar(ev)
        self._t_last = now
        done = min(max(self._done, ev.done), ev.total)  # monotone within a stage
        self._done = done
        if self.tty:
            if self._bar is not None:
                self._bar.total = ev.total
                self._bar.update(done - self._bar.n)
            return
        elapsed = now - self._t_stage
        if done >= ev.total:
            # a finished stage: always for single evaluations and the shared stages of a
            # sweep; inside a sweep's points the PointDone line says it
            if ev.points == 1 or ev.stage in ("baseline", "calibrate"):
                self._line(f"{self._stage_name(ev)}: {done}/{ev.total} done in {_secs(elapsed)}")
        elif now - self._t_line >= self.interval and done > 0:
            eta = elapsed / done * (ev.total - done)
            pct = 100 * done / ev.total if ev.total else 100
            self._line(
                f"{self._stage_name(ev)}: {done}/{ev.total} ({pct:.0f}%), "
                f"{_secs(elapsed)} elapsed, about {_secs(eta)} left"
            )

    def _point(self, ev: Any) -> None:
        now = self._t_last = self.clock()
        self._finish_bar()
        self._key = None
        start = self._t_first_point if self._t_first_point is not None else now
        done = ev.count
        eta = (now - start) / done * (ev.total - done)
        name = getattr(ev.result, "name", "") or f"point {done}"
        line = f"{self.label}: {done}/{ev.total} done ({name})"
        if done < ev.total:
            line += f", about {_secs(eta)} left"
        if self.tty:
            self.stream.write(line + "\n")
            self.stream.flush()
        else:
            self._line(line)

    # -- output ---------------------------------------------------------------------------
    def _line(self, text: str) -> None:
        self._t_line = self.clock()
        self.stream.write(f"quantviz: {text}\n")
        self.stream.flush()

    def _open_bar(self, ev: Any) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=ev.total,
            desc=self._stage_name(ev),
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
            mininterval=self.bar_interval,
            bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {percentage:3.0f}% "
            "[{elapsed}<{remaining}]",
        )

    def _finish_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self._finish_bar()


def drive(
    gen: Generator[Any, Any, T],
    reporter: ProgressReporter,
    on_point: Callable[[Any], None] | None = None,
) -> T:
    """Run ``gen`` to the end showing its progress; ``on_point`` gets each ``PointDone``.

    The generator is closed however this ends (an error, Ctrl-C), which puts the float
    model back at once.
    """
    from quantviz.eval.results import PointDone

    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                return stop.value
            if on_point is not None and isinstance(ev, PointDone):
                on_point(ev)  # first: a Ctrl-C after the progress line keeps this point
            reporter(ev)
    finally:
        reporter.close()
        gen.close()
