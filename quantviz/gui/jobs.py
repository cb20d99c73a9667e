"""Background jobs of the app: evaluate, uniform sweep, sensitivity, mixed precision.

:class:`JobController` turns the engine's generators (``quantviz.eval``) into runs of one
:class:`~quantviz.gui.workers.Runner` (policy: a new job replaces the running one), keeps
what later runs reuse (the float baseline, the fake-quantized weight cache, the last
sensitivities) and records results in the session as they arrive: a sweep's curve grows
point by point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from quantviz.core.spec import QuantSpec
from quantviz.gui.errors import ErrorReporter, guarded
from quantviz.gui.layer_table import human_bytes
from quantviz.gui.workers import Runner
from quantviz.session import Session

__all__ = ["SENSITIVITY_BITS", "SWEEP_BITS", "JobController"]

SWEEP_BITS = (2, 3, 4, 5, 6, 8)
SENSITIVITY_BITS = 4


class JobController(QObject):
    """Starts jobs on ``runner`` and files their results into ``session``.

    Signals: ``jobDone(kind)``, ``jobFailed(kind)``, ``statusMessage(text, msecs)``.
    """

    jobDone = Signal(str)
    jobFailed = Signal(str)
    statusMessage = Signal(str, int)

    def __init__(self, session: Session, errors: ErrorReporter, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.errors = errors
        self.runner = Runner("jobRunner", self)
        self.kind = ""
        self.baseline: Any = None
        self.sens: Any = None
        self.weight_cache: Any = None
        #: called first in every job's thread: waits for work that must not overlap a job
        #: (the calibration pass, which reads the float model an evaluation swaps out)
        self.wait_before: Callable[[], object] = lambda: None
        self.runner.yielded.connect(self._on_job_item)
        self.runner.finished.connect(self._on_job_done)
        self.runner.failed.connect(self._on_job_failed)

    def reset(self) -> None:
        """Forget what belonged to the previous model or data (and stop its job)."""
        from quantviz.eval import WeightCache

        self.runner.cancel()
        self.baseline = None
        self.sens = None
        self.weight_cache = WeightCache()

    def _need_model(self) -> bool:
        if self.session.handle is None:
            self.errors.report("No model", "Open a model first.")
            return False
        if self.session.data is None:
            self.errors.report("No data", "Open evaluation data first (File > Open data).")
            return False
        return True

    def _default_weight_spec(self) -> QuantSpec:
        return self.session.config.default.weight or QuantSpec()

    @guarded("Could not start the evaluation")
    def evaluate(self) -> None:
        """Evaluate the current configuration in the background (F5)."""
        if not self._need_model():
            return
        s = self.session
        handle, data, config, name = s.handle, s.data, s.config, s.current_name
        from quantviz.eval import check_config

        check_config(handle, config)
        stats = dict(s.activation_stats)
        cache, baseline = self.weight_cache, self.baseline

        wait = self.wait_before

        def job() -> Any:
            wait()
            from quantviz.eval import compute_baseline, evaluate

            base = baseline
            if base is None or not base.matches(handle.module, data.x):
                base = yield from compute_baseline(handle, data)
            res = yield from evaluate(
                handle, data, config, stats=stats, cache=cache, baseline=base, name=name
            )
            return base, res, name, config

        self._start_job("evaluate", f"Evaluating {name}", job)

    @guarded("Could not start the sweep")
    def uniform_sweep(self) -> None:
        """Every layer at the default weight scheme with 2..8 bits; the curve grows per point."""
        if not self._need_model():
            return
        s = self.session
        handle, data = s.handle, s.data
        spec = self._default_weight_spec()
        act = s.config.default.activation
        stats = dict(s.activation_stats)
        cache, baseline = self.weight_cache, self.baseline
        s.clear_results("uniform sweep")

        wait = self.wait_before

        def job() -> Any:
            wait()
            from quantviz.eval import uniform_sweep

            return (
                yield from uniform_sweep(
                    handle,
                    data,
                    SWEEP_BITS,
                    spec,
                    activation=act,
                    stats=stats,
                    cache=cache,
                    baseline=baseline,
                )
            )

        self._start_job("uniform sweep", f"Uniform sweep W{spec.short()}", job)

    @guarded("Could not start the sensitivity analysis")
    def run_sensitivity(self) -> None:
        """Each layer alone at a low bit-width: fills the table's sensitivity column."""
        if not self._need_model():
            return
        s = self.session
        handle, data = s.handle, s.data
        spec = self._default_weight_spec()
        cache, baseline = self.weight_cache, self.baseline

        wait = self.wait_before

        def job() -> Any:
            wait()
            from quantviz.eval import sensitivity

            return (
                yield from sensitivity(
                    handle, data, SENSITIVITY_BITS, spec, cache=cache, baseline=baseline
                )
            )

        self._start_job("sensitivity", "Sensitivity", job)

    @guarded("Could not start mixed precision")
    def mixed_precision(self, budget: float = 0.0) -> None:
        """Greedy mixed precision under ``budget`` bytes (0: a sweep of six budgets)."""
        if not self._need_model():
            return
        s = self.session
        handle, data = s.handle, s.data
        spec = self._default_weight_spec()
        budgets = None if budget <= 0 else [budget]
        stats = dict(s.activation_stats)
        cache, baseline, sens = self.weight_cache, self.baseline, self.sens
        s.clear_results("mixed precision")

        wait = self.wait_before

        def job() -> Any:
            wait()
            from quantviz.eval import mixed_precision

            return (
                yield from mixed_precision(
                    handle,
                    data,
                    sens,
                    budgets,
                    base_spec=spec,
                    stats=stats,
                    cache=cache,
                    baseline=baseline,
                )
            )

        self._start_job("mixed precision", "Mixed precision", job)

    def cancel(self) -> None:
        """Stop the running job at its next yield."""
        if self.runner.running:
            self.runner.cancel()
            self.statusMessage.emit(f"{self.kind} cancelled", 4000)

    def _start_job(self, kind: str, label: str, factory: Callable[[], Any]) -> None:
        self.kind = kind
        self.runner.start(label, factory)

    def _on_job_item(self, item: Any) -> None:
        from quantviz.eval import PointDone

        if isinstance(item, PointDone) and self.kind in ("uniform sweep", "mixed precision"):
            r = item.result
            if self.kind == "mixed precision" and not r.name.startswith("mixed"):
                return  # a point of the sensitivity pass mixed precision runs first
            cfg = r.config if r.config is not None else self.session.config
            self.session.add_result(
                r,
                name=r.name or f"{self.kind} {item.index}",
                config=cfg,
                series=self.kind,
            )

    @guarded("Could not show the result")
    def _on_job_done(self, payload: Any) -> None:
        kind = self.kind
        s = self.session
        if kind == "evaluate":
            base, res, name, config = payload
            self.baseline = base
            if name not in s.configs:  # deleted while it ran
                s.add_config(name, config)
            s.add_result(res, name=name, config=config)
            self.statusMessage.emit(
                f"{name}: {res.metric} {res.value:.4f} (float {res.baseline:.4f}), "
                f"{human_bytes(res.model_bytes)}",
                8000,
            )
        elif kind == "sensitivity":
            self.sens = payload
            s.set_sensitivity({ls.fqn: payload.drop(ls.fqn) for ls in payload.layers})
        elif kind == "mixed precision":
            self.sens = payload.sensitivity
            if payload.infeasible:
                self.statusMessage.emit(
                    "budget too small for any allocation: "
                    + ", ".join(human_bytes(b) for b in payload.infeasible),
                    8000,
                )
        self.jobDone.emit(kind)

    def _on_job_failed(self, exc: BaseException) -> None:
        self.errors.report(f"{self.kind.capitalize() or 'Job'} failed", exc)
        self.jobFailed.emit(self.kind)
