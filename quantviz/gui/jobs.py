"""Runs the controller's long jobs (evaluate, sweeps, sensitivity, mixed precision) in one
background :class:`~quantviz.gui.workers.Runner`.

The recipes and what their results change live in :class:`quantviz.app.AppController`; this
class only moves them between threads: ``job.factory()`` runs in the worker, yielded items
and the result come back to the GUI thread, where ``job.on_item`` / ``job.on_done`` file them
into the session (a sweep's curve grows point by point). Policy: a new job replaces the
running one, except evaluations of named configurations, which queue behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QObject, Signal

from quantviz.app import SENSITIVITY_BITS, SWEEP_BITS, AppController, Job
from quantviz.core.units import human_bytes
from quantviz.gui.errors import ErrorReporter
from quantviz.gui.workers import Runner

__all__ = ["SENSITIVITY_BITS", "SWEEP_BITS", "JobController"]


class JobController(QObject):
    """Starts the controller's jobs on ``runner``.

    Signals: ``jobDone(kind)``, ``jobFailed(kind)``, ``statusMessage(text, msecs)``,
    ``queueChanged(int)`` (evaluations waiting).
    """

    jobDone = Signal(str)
    jobFailed = Signal(str)
    statusMessage = Signal(str, int)
    queueChanged = Signal(int)

    def __init__(
        self, controller: AppController, errors: ErrorReporter, parent: QObject | None = None
    ):
        super().__init__(parent)
        self.controller = controller
        self.errors = errors
        self.runner = Runner("jobRunner", self)
        self.job: Job | None = None
        self.queue: list[str] = []
        self.sweep_bits: tuple[int, ...] = SWEEP_BITS
        self.sensitivity_bits: tuple[int, ...] = SENSITIVITY_BITS
        #: where sweeps and sensitivity run: "" in this process, else a Ray cluster address
        #: (local, auto, ray://HOST:PORT; see quantviz.gui.cluster_menu)
        self.cluster_address = ""
        self.runner.yielded.connect(self._on_item)
        self.runner.finished.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)

    @property
    def kind(self) -> str:
        return "" if self.job is None else self.job.kind

    def reset(self) -> None:
        """Stop the running job and forget queued evaluations (a new model or data)."""
        self.queue.clear()
        self.queueChanged.emit(0)
        self.runner.cancel()

    # -- starting jobs ---------------------------------------------------------------------
    def _start(self, make: Callable[[], Job], what: str) -> bool:
        try:
            job = make()
        except ValueError as exc:
            self.errors.report(f"Could not start {what}", exc)
            return False
        self.job = job
        self.runner.start(job.label, job.factory)
        return True

    def start_job(self, make: Callable[[], Job], what: str) -> bool:
        """Start the job ``make()`` builds (replacing a running one); a ``ValueError``
        from ``make`` is reported as "Could not start <what>"."""
        return self._start(make, what)

    def evaluate(self, name: str | None = None) -> bool:
        """Evaluate configuration ``name`` (the current one when None) in the background;
        queued behind a running job. The current configuration stays current."""
        s = self.controller.session
        name = s.current_name if name is None else name
        if self.runner.running:
            if name not in self.queue:
                self.queue.append(name)
                self.queueChanged.emit(len(self.queue))
            self.statusMessage.emit(f"{name}: queued for evaluation", 4000)
            return True
        return self._start(lambda: self.controller.evaluate_job(name), "the evaluation")

    def uniform_sweep(self, bits: Iterable[int] | None = None) -> bool:
        """Every layer at the default weight scheme with each of ``bits``: a new curve."""
        widths = tuple(bits) if bits is not None else self.sweep_bits
        cluster = self.cluster_address or None
        return self._start(lambda: self.controller.sweep_job(widths, cluster=cluster), "the sweep")

    def run_sensitivity(self, bits: Iterable[int] | None = None) -> bool:
        """Each layer alone at ``bits``: fills the table's sensitivity column."""
        widths = tuple(bits) if bits is not None else self.sensitivity_bits
        cluster = self.cluster_address or None
        return self._start(
            lambda: self.controller.sensitivity_job(widths, cluster=cluster),
            "the sensitivity analysis",
        )

    def mixed_precision(self, budget: float = 0.0) -> bool:
        """Greedy mixed precision under ``budget`` bytes (0: a sweep of six budgets)."""
        return self._start(lambda: self.controller.mixed_precision_job(budget), "mixed precision")

    def transforms(self, name: str | None = None) -> bool:
        """Compute the transforms / roundings of configuration ``name`` (current when None)."""
        return self._start(lambda: self.controller.transforms_job(name), "the transforms")

    def mixed_cost_table(self, choices: str, proxy: str = "mse") -> bool:
        """The exact mixed-precision cost table of the menu ``choices`` under ``proxy``."""
        return self._start(
            lambda: self.controller.mixed_cost_job(choices, proxy), "the mixed-precision costs"
        )

    def mixed_point(self, config: Any, name: str) -> bool:
        """Evaluate a mixed-precision assignment; queued as a new point of its curve."""
        return self._start(
            lambda: self.controller.mixed_point_job(config, name), "the mixed-precision point"
        )

    def cancel(self) -> None:
        """Stop the running job at its next yield (queued evaluations are dropped)."""
        if self.runner.running:
            self.queue.clear()
            self.queueChanged.emit(0)
            self.runner.cancel()

    # -- results -------------------------------------------------------------------------------
    def _on_item(self, item: Any) -> None:
        from quantviz.eval.points import PointFailed, PointRetried, TasksStatus

        if isinstance(item, TasksStatus):  # points on a cluster: how many run and wait
            where = (self.job.meta.get("cluster") if self.job is not None else None) or ""
            self.statusMessage.emit(f"{self.kind} on {where}: {item.text()}", 0)
        elif isinstance(item, PointFailed):
            self.statusMessage.emit(f"{item.name} failed: {item.error}", 8000)
        elif isinstance(item, PointRetried):
            self.statusMessage.emit(
                f"{item.name}: its worker died; recomputed (attempt {item.attempts})", 8000
            )
        if self.job is not None:
            try:
                self.job.on_item(item)
            except Exception as exc:  # a result that cannot be filed must not stop the job
                self.errors.report("Could not show the result", exc)

    def _on_done(self, payload: Any) -> None:
        job = self.job
        kind = self.kind
        try:
            out = job.on_done(payload) if job is not None else None
        except Exception as exc:
            self.errors.report("Could not show the result", exc)
            self.jobFailed.emit(kind)
            self._next()
            return
        self._report(kind, out, payload)
        self.jobDone.emit(kind)
        self._next()

    def _report(self, kind: str, out: Any, payload: Any) -> None:
        if kind == "evaluate" and out is not None:
            r = out.result
            self.statusMessage.emit(
                f"{out.name}: {r.metric} {r.value:.4f} (float {r.baseline:.4f}), "
                f"{human_bytes(r.model_bytes)}",
                8000,
            )
        elif kind == "mixed precision" and getattr(payload, "infeasible", None):
            self.statusMessage.emit(
                "budget too small for any allocation: "
                + ", ".join(human_bytes(b) for b in payload.infeasible),
                8000,
            )
        elif getattr(payload, "errors", None):
            self.statusMessage.emit(
                f"{kind} finished; {len(payload.errors)} point(s) failed: "
                + "; ".join(f"{e['name']}: {e['error']}" for e in payload.errors[:3]),
                15000,
            )
        elif kind:
            self.statusMessage.emit(f"{kind} finished", 4000)

    def _on_failed(self, exc: BaseException) -> None:
        kind = self.kind
        self.errors.report(f"{kind.capitalize() or 'Job'} failed", exc)
        self.jobFailed.emit(kind)
        self._next()

    def _on_cancelled(self) -> None:
        if self.kind:
            self.statusMessage.emit(f"{self.kind} cancelled", 4000)

    def _next(self) -> None:
        s = self.controller.session
        while self.queue and not self.runner.running:
            name = self.queue.pop(0)
            self.queueChanged.emit(len(self.queue))
            if name in s.configs:
                self._start(lambda n=name: self.controller.evaluate_job(n), "the evaluation")
