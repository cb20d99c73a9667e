"""The budget slider of exact mixed precision (a dock; Run > Budget slider).

The user picks a menu of schemes (``--choices`` syntax), a proxy and a solver, and computes
the cost table (a controller job in the background). Then dragging the slider re-solves at
once and the layer table shows each layer's chosen scheme; releasing it (or pausing after
keyboard steps) evaluates that assignment in the background and adds it to the trade-off
plot as a point of the ``exact mixed`` curve. *Apply* makes it the current configuration.

How a drag re-solves without blocking: the exact solver is an ILP that takes ~0.15 s on a
300-layer x 12-scheme problem (``benchmarks/bench_mixed.py``), above the 50 ms a drag may
take. So the cost job also traces the *exact* Pareto front (dynamic programming, in the
worker) and a drag looks up the front point of largest size within the budget: the optimum
of the knapsack at that budget, in microseconds. When the front is too large to trace, each
budget is solved by the ILP in one background thread, the newest budget winning
(intermediate ones are skipped). The greedy solver is fast enough to run inline.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from quantviz.core.mixed_spec import DEFAULT_CHOICES, Budget
from quantviz.core.units import human_bytes

__all__ = ["BudgetPanel"]

#: slider positions between the smallest and the largest model the menu allows
STEPS = 1000
#: after keyboard steps, evaluate once the value has rested this long (ms)
KEY_EVAL_DELAY = 600


class _Solver(QObject):
    """One background thread solving the newest requested budget (ILP fallback)."""

    solved = Signal(object, object)  # (budget bytes, MixedSolution or exception)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._pending: tuple[Any, Budget, str] | None = None
        self._busy = False

    def request(self, table: Any, budget: Budget, solver: str) -> None:
        with self._lock:
            self._pending = (table, budget, solver)
            if self._busy:
                return
            self._busy = True
        threading.Thread(target=self._loop, name="budgetSolver", daemon=True).start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                job, self._pending = self._pending, None
                if job is None:
                    self._busy = False
                    return
            table, budget, solver = job
            try:
                out: Any = table.solve(budget, solver)
            except Exception as exc:  # shown in the panel, never raised in the thread
                out = exc
            self.solved.emit(budget.value, out)


class BudgetPanel(QWidget):
    """Signals: ``costsRequested(choices, proxy)``, ``evaluateRequested(config, name)``,
    ``applyRequested(config, text)``, ``assignmentChanged(dict)`` (fqn -> label)."""

    costsRequested = Signal(str, str)
    evaluateRequested = Signal(object, str)
    applyRequested = Signal(object, str)
    assignmentChanged = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("budgetPanel")
        self.table: Any = None
        self.front: list[Any] | None = None
        self._front_sizes: list[float] = []
        self.solution: Any = None
        self._lo = self._hi = 0.0

        self.choicesEdit = QLineEdit(DEFAULT_CHOICES, self)
        self.choicesEdit.setObjectName("choicesEdit")
        self.choicesEdit.setToolTip(
            "Schemes each layer may take: intN/uintN[:pt|pc|gN], nf4, fp8, fp4, mxfp8, "
            "mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8, nvfp4, float"
        )
        self.proxyCombo = QComboBox(self)
        self.proxyCombo.setObjectName("proxyCombo")
        self.proxyCombo.addItems(["mse", "kl", "hessian", "fisher"])
        self.proxyCombo.setToolTip(
            "Cost of a (layer, scheme): mse = weight squared error (instant); kl = output KL "
            "with that layer alone quantized (one evaluation per candidate); hessian = "
            "Hutchinson trace x ||dW||^2; fisher = empirical Fisher x dW^2"
        )
        self.solverCombo = QComboBox(self)
        self.solverCombo.setObjectName("solverCombo")
        self.solverCombo.addItems(["exact", "greedy"])
        self.computeButton = QPushButton("Compute costs", self)
        self.computeButton.setObjectName("computeCostsButton")
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setObjectName("budgetSlider")
        self.slider.setRange(0, STEPS)
        self.slider.setValue(STEPS)
        self.slider.setEnabled(False)
        self.slider.setPageStep(STEPS // 20)
        self.budgetLabel = QLabel("compute the costs first", self)
        self.budgetLabel.setObjectName("budgetLabel")
        self.resultLabel = QLabel("", self)
        self.resultLabel.setObjectName("budgetResultLabel")
        self.resultLabel.setWordWrap(True)
        self.applyButton = QPushButton("Apply", self)
        self.applyButton.setObjectName("applyMixedButton")
        self.applyButton.setEnabled(False)
        self.applyButton.setToolTip("Make the shown assignment the current configuration")

        form = QFormLayout()
        form.addRow("Choices", self.choicesEdit)
        row = QHBoxLayout()
        row.addWidget(QLabel("Proxy", self))
        row.addWidget(self.proxyCombo)
        row.addWidget(QLabel("Solver", self))
        row.addWidget(self.solverCombo)
        row.addWidget(self.computeButton)
        form.addRow(row)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.slider)
        lay.addWidget(self.budgetLabel)
        lay.addWidget(self.resultLabel)
        lay.addWidget(self.applyButton, alignment=Qt.AlignmentFlag.AlignRight)

        self._solver = _Solver(self)
        self._solver.solved.connect(self._on_solved)
        self._keyTimer = QTimer(self)
        self._keyTimer.setSingleShot(True)
        self._keyTimer.setInterval(KEY_EVAL_DELAY)
        self._keyTimer.timeout.connect(self.evaluate_point)
        self.computeButton.clicked.connect(self._request_costs)
        self.slider.valueChanged.connect(self._on_value)
        self.slider.sliderReleased.connect(self.evaluate_point)
        self.solverCombo.currentTextChanged.connect(lambda *_: self._on_value(self.slider.value()))
        self.applyButton.clicked.connect(self._apply)

    # -- the cost table ------------------------------------------------------------------
    def _request_costs(self) -> None:
        self.costsRequested.emit(self.choicesEdit.text(), self.proxyCombo.currentText())

    def set_table(self, table: Any, front: list[Any] | None = None) -> None:
        """A new cost table (and its exact front, if traced): the slider spans the smallest
        to the largest model the menu allows and starts at the largest."""
        self.table, self.front = table, front
        self._front_sizes = [p.resource for p in front] if front else []
        self._lo = table.fixed_bytes + table.smallest("bytes")
        self._hi = table.fixed_bytes + sum(
            max(r for r, _ in opts) for opts in table.options("bytes")
        )
        self.slider.setEnabled(True)
        self.slider.setValue(STEPS)
        self._on_value(STEPS)

    def clear(self) -> None:
        """Forget the table (a new model)."""
        self.table = self.front = self.solution = None
        self.slider.setEnabled(False)
        self.applyButton.setEnabled(False)
        self.budgetLabel.setText("compute the costs first")
        self.resultLabel.setText("")
        self.assignmentChanged.emit(None)

    # -- the slider ----------------------------------------------------------------------
    def budget_bytes(self, value: int | None = None) -> float:
        v = self.slider.value() if value is None else value
        return self._lo + (self._hi - self._lo) * v / STEPS

    def set_budget_bytes(self, b: float) -> None:
        """Move the slider to the position nearest ``b`` bytes (as a user would)."""
        span = max(self._hi - self._lo, 1e-12)
        self.slider.setValue(round((b - self._lo) / span * STEPS))

    def _on_value(self, value: int) -> None:
        if self.table is None:
            return
        b = self.budget_bytes(value)
        budget = Budget("bytes", b, f"{b:.0f}B")
        bpw = 8 * (b - self.table.fixed_bytes) / max(self.table.weights, 1)
        self.budgetLabel.setText(f"budget {human_bytes(b)} ({bpw:.2f} bits per weight)")
        solver = self.solverCombo.currentText()
        if solver == "exact" and self.front is not None:
            self._show(b, self._lookup(budget))
        elif solver == "greedy":
            self._show(b, self._solve_inline(budget, solver))
        else:
            self._solver.request(self.table, budget, solver)
        if not self.slider.isSliderDown():
            self._keyTimer.start()  # keyboard / click steps: evaluate once they rest

    def _lookup(self, budget: Budget) -> Any:
        """The optimum at ``budget``: the exact front's point of largest size that fits."""
        bound = budget.value - self.table.fixed_bytes
        i = bisect.bisect_right(self._front_sizes, bound) - 1
        if i < 0:
            return ValueError("the budget is below the smallest model")
        return self.table.choice_solution(self.front[i], budget)  # type: ignore[index]

    def _solve_inline(self, budget: Budget, solver: str) -> Any:
        try:
            return self.table.solve(budget, solver)
        except ValueError as exc:
            return exc

    def _on_solved(self, budget_bytes: float, out: Any) -> None:
        if self.table is not None and abs(budget_bytes - self.budget_bytes()) < 0.5:
            self._show(budget_bytes, out)

    def _show(self, budget_bytes: float, out: Any) -> None:
        if isinstance(out, Exception):
            self.solution = None
            self.applyButton.setEnabled(False)
            self.resultLabel.setText(f"no assignment: {out}")
            self.assignmentChanged.emit(None)
            return
        self.solution = out
        t = self.table
        bpw = 8 * out.weight_bytes / max(t.weights, 1)
        self.resultLabel.setText(
            f"{human_bytes(out.model_bytes)} ({bpw:.2f} bits per weight), proxy "
            f"{t.proxy} {out.objective:.4g}"
        )
        self.applyButton.setEnabled(True)
        self.assignmentChanged.emit(dict(out.assignment))

    # -- evaluating and applying ---------------------------------------------------------
    def _name(self) -> str:
        t, sol = self.table, self.solution
        bpw = 8 * sol.weight_bytes / max(t.weights, 1)
        return f"mixed {t.proxy} {bpw:.2f} bpw"

    def evaluate_point(self) -> None:
        """Evaluate the shown assignment in the background (a new trade-off point)."""
        self._keyTimer.stop()
        if self.solution is not None:
            self.evaluateRequested.emit(self.solution.config, self._name())

    def _apply(self) -> None:
        if self.solution is not None:
            self.applyRequested.emit(self.solution.config, self._name())


def install_budget_dock(win: Any) -> BudgetPanel:
    """Add the panel to main window ``win`` as the hidden dock ``budgetDock`` (shown by
    Run > Budget slider, ``win.budgetAction``) and wire it to the window's jobs, layer table
    and undo stack."""
    from PySide6.QtWidgets import QDockWidget

    from quantviz.gui.layout import keep_room

    panel = BudgetPanel(win)
    dock = QDockWidget("Budget slider (exact mixed precision)", win)
    dock.setObjectName("budgetDock")
    dock.setWidget(panel)
    # at the bottom, like the debug dock: on the right it widened the window past a
    # 1366-px screen; given a readable height whenever it is shown
    win.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    dock.hide()
    keep_room(win, dock)
    win.budgetDock = dock
    act = dock.toggleViewAction()
    act.setObjectName("budgetAction")
    act.setText("Budget slider")
    act.setToolTip("Exact mixed precision: drag a memory budget, see each layer's scheme")
    win.budgetAction = act
    ctl, jobs = win.controller, win.jobs
    panel.costsRequested.connect(jobs.mixed_cost_table)
    panel.assignmentChanged.connect(win.table.model.set_preview)
    panel.evaluateRequested.connect(jobs.mixed_point)
    panel.applyRequested.connect(lambda cfg, name: win.push_config(cfg, f"apply {name}"))

    def done(kind: str) -> None:
        if kind == "mixed cost table" and ctl.mixed_table is not None:
            panel.set_table(ctl.mixed_table, ctl.mixed_front)

    jobs.jobDone.connect(done)
    ctl.session.model_changed.connect(lambda *_: panel.clear())
    return panel
