"""Run core generators off the GUI thread, with progress, cancel and stale-result dropping.

A :class:`Runner` runs one generator at a time in a background thread. Each ``next()`` happens
off the GUI thread; every yielded item is delivered to the GUI thread through a queued
signal, tagged with the run's *generation*; items of an older generation are dropped.
Cancelling sets a flag the thread checks after every yield, then closes the generator (so
it stops at its next yield and runs its ``finally`` blocks).

Policy when a run is started while another is in flight: **replace** — the old run is
cancelled and its late results are dropped.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

__all__ = ["Runner", "progress_of"]

GenFactory = Callable[[], Iterator[Any] | Generator[Any, Any, Any]]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch's intra-op work with ``n`` threads inside the block (restored after).

    Inline work on the GUI thread is small (<= ~1M elements), where two OpenMP threads gain
    little and, on a loaded machine, lose a lot: a parallel region waits for a descheduled
    worker thread (measured: 10 ms single-threaded vs 360 ms two-threaded for a 1M-weight
    re-quantization while another process kept one core busy).
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    old = torch.get_num_threads()
    if old != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if old != n:
            torch.set_num_threads(old)


def progress_of(item: Any) -> tuple[float, str] | None:
    """Interpret a yielded ``item`` as progress ``(fraction 0..1, message)``, or None.

    Understands floats in [0, 1], ``(done, total)`` pairs and objects with ``fraction`` or
    ``done``/``total`` (or ``step``/``total``, ``current``/``total``) attributes and an
    optional ``message``/``stage``/``desc``.
    """
    if isinstance(item, bool):
        return None
    if isinstance(item, float) and 0.0 <= item <= 1.0:
        return item, ""
    if isinstance(item, tuple) and len(item) == 2 and all(isinstance(v, int) for v in item):
        done, total = item
        return (done / total if total else 0.0), f"{done}/{total}"
    msg = ""
    stage, done_, total_ = (getattr(item, k, None) for k in ("stage", "done", "total"))
    if isinstance(stage, str) and isinstance(done_, int) and isinstance(total_, int):
        from quantviz.gui.status_bar import progress_text

        frac = getattr(item, "fraction", None)
        if isinstance(frac, int | float) and not isinstance(frac, bool):
            return float(frac), progress_text(item)
    for attr in ("message", "stage", "desc", "label"):
        v = getattr(item, attr, None)
        if isinstance(v, str):
            msg = v
            break
    frac = getattr(item, "fraction", None)
    if isinstance(frac, int | float) and not isinstance(frac, bool):
        return float(frac), msg
    total = getattr(item, "total", None)
    for attr in ("done", "step", "current", "batch", "n"):
        done = getattr(item, attr, None)
        if isinstance(done, int) and isinstance(total, int):
            return (done / total if total else 0.0), msg or f"{done}/{total}"
    return None


class Runner(QObject):
    """Runs one generator at a time in a thread; see the module docstring.

    Signals (all delivered on the GUI thread, only for the current generation):
    ``started(label)``, ``progress(fraction, message)`` for items :func:`progress_of`
    understands, ``yielded(item)`` for every other item, ``finished(return_value)``,
    ``failed(exception)``, ``cancelled()`` and ``idle()`` after any of the last three.
    """

    started = Signal(str)
    progress = Signal(float, str)
    yielded = Signal(object)
    finished = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    idle = Signal()
    _deliver = Signal(int, str, object)

    def __init__(self, name: str = "runner", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.generation = 0
        self.label = ""
        self._cancel: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._deliver.connect(self._on_deliver)

    # -- control ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the current generation has not finished, failed or been cancelled."""
        return self._running

    def start(self, label: str, factory: GenFactory) -> int:
        """Run ``factory()`` (called in the thread) to exhaustion; returns the generation.

        A run in flight is cancelled first (policy: replace).
        """
        if self._running:
            self.cancel()
        self.generation += 1
        gid = self.generation
        self.label = label
        self._cancel = ev = threading.Event()
        self._running = True
        t = threading.Thread(
            target=self._work,
            args=(gid, factory, ev, self._thread),
            name=f"quantviz-{label}",
            daemon=True,
        )
        self._thread = t
        self.started.emit(label)
        t.start()
        return gid

    def run_inline(self, label: str, factory: GenFactory) -> int:
        """Run ``factory()`` to exhaustion on the calling (GUI) thread, same signals."""
        if self._running:
            self.cancel()
        self.generation += 1
        gid = self.generation
        self.label = label
        self._running = True
        self.started.emit(label)
        try:
            with torch_threads(1):
                gen = factory()
                while True:
                    try:
                        item = next(gen)
                    except StopIteration as stop:
                        self._on_deliver(gid, "done", stop.value)
                        break
                    self._on_deliver(gid, "item", item)
        except Exception as exc:
            self._on_deliver(gid, "error", exc)
        return gid

    def cancel(self) -> None:
        """Stop the current run at its next yield; its late results are dropped."""
        if not self._running:
            return
        if self._cancel is not None:
            self._cancel.set()
        self.generation += 1  # anything still queued from the old run is stale now
        self._running = False
        self.cancelled.emit()
        self.idle.emit()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current run's thread has ended (call from another thread, e.g.
        at the start of a job that must not overlap this runner's work)."""
        t = self._thread
        if t is not None and t.is_alive() and t is not threading.current_thread():
            t.join(timeout)
            return not t.is_alive()
        return True

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Cancel and wait for the thread to end; True if it ended within ``timeout``."""
        self.cancel()
        t = self._thread
        if t is not None and t.is_alive():
            t.join(timeout)
            return not t.is_alive()
        return True

    # -- the thread --------------------------------------------------------------------------
    def _work(
        self, gid: int, factory: GenFactory, ev: threading.Event, prev: threading.Thread | None
    ) -> None:
        gen = None
        try:
            if prev is not None and prev.is_alive():
                prev.join()  # runs never overlap: the old one stops at its next yield
            if ev.is_set():
                return
            gen = factory()
            while not ev.is_set():
                try:
                    item = next(gen)
                except StopIteration as stop:
                    self._deliver.emit(gid, "done", stop.value)
                    return
                if ev.is_set():
                    break
                self._deliver.emit(gid, "item", item)
        except BaseException as exc:
            if not ev.is_set():
                self._deliver.emit(gid, "error", exc)
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):  # a generator failing in its finally
                    close()

    @Slot(int, str, object)
    def _on_deliver(self, gid: int, kind: str, payload: object) -> None:
        if gid != self.generation or not self._running:
            return  # stale: a newer run replaced this one, or it was cancelled
        if kind == "item":
            prog = progress_of(payload)
            if prog is not None:
                self.progress.emit(*prog)
            else:
                self.yielded.emit(payload)
            return
        self._running = False
        if kind == "done":
            self.finished.emit(payload)
        else:
            self.failed.emit(payload)
        self.idle.emit()


def wait_for_signal(signal, timeout: float = 120.0) -> None:
    """Run a local event loop until ``signal`` fires; ``TimeoutError`` after ``timeout`` s.

    For scripts (screenshots, benchmarks) that drive the app without pytest-qt.
    """
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    fired: list[int] = []

    def done(*_: object) -> None:
        fired.append(1)
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(int(timeout * 1000), loop.quit)
    loop.exec()
    signal.disconnect(done)
    if not fired:
        raise TimeoutError(f"no signal within {timeout} s")
