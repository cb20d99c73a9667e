"""The main window's status bar: the model's numbers, the current configuration's size, a
monotone progress bar (stage, counts, ETA) with Cancel for the long jobs (evaluate, sweeps,
sensitivity, …), and a save's own small indicator with its own Stop button.

A save runs in its own worker, possibly while a long job runs: each shows its own numbers
(one bar for both jumped between the two jobs' fractions), and each has its own stop.
Esc (Run > Cancel) stops the long job, or the save when only a save runs."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QFontMetrics
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QToolButton,
    QWidget,
)

from quantviz.app import AppController
from quantviz.core.units import human_bytes, human_count

if TYPE_CHECKING:
    from quantviz.gui.jobs import JobController
    from quantviz.gui.session_actions import SessionActions

__all__ = ["StatusBar", "progress_text"]

IDLE_TIP = "Stop the running job at its next step (Esc)"


def _lower(label: str) -> str:
    """``Evaluating default`` as it reads inside a sentence."""
    return label[:1].lower() + label[1:]


def progress_text(item: Any) -> str:
    """``stage done/total`` (``point 2/6 · forward 3/7`` inside a sweep) for a progress item."""
    stage = getattr(item, "stage", "") or ""
    done, total = getattr(item, "done", None), getattr(item, "total", None)
    text = stage
    if isinstance(done, int) and isinstance(total, int) and total:
        text = f"{stage} {done}/{total}".strip()
    points = getattr(item, "points", 1) or 1
    if points > 1:
        text = f"point {getattr(item, 'point', 0) + 1}/{points} · {text}"
    return text


class StatusBar:
    """Builds the status widgets on ``window.statusBar()`` and keeps them up to date."""

    def __init__(self, window: QMainWindow, controller: AppController) -> None:
        self.window = window
        self.controller = controller
        sb = window.statusBar()
        self.modelLabel = QLabel("no model", window)
        self.modelLabel.setObjectName("modelLabel")
        self.paramsLabel = QLabel("", window)
        self.paramsLabel.setObjectName("paramsLabel")
        self.floatSizeLabel = QLabel("", window)
        self.floatSizeLabel.setObjectName("floatSizeLabel")
        self.currentSizeLabel = QLabel("", window)
        self.currentSizeLabel.setObjectName("currentSizeLabel")
        self.progressBar = QProgressBar(window)
        self.progressBar.setObjectName("progressBar")
        self.progressBar.setRange(0, 1000)
        self.progressBar.setFixedWidth(340)
        self.progressBar.setTextVisible(True)
        self.progressBar.setFormat("idle")
        self.progressBar.setValue(0)
        self.progressBar.setEnabled(False)
        self.cancelButton = QPushButton("Cancel", window)
        self.cancelButton.setObjectName("cancelButton")
        self.cancelButton.setEnabled(False)
        self.cancelButton.setToolTip(IDLE_TIP)
        # a save's own indicator: shown only while a save runs (rare, unlike jobs)
        self.saveIndicator = QWidget(window)
        self.saveIndicator.setObjectName("saveIndicator")
        row = QHBoxLayout(self.saveIndicator)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(2)
        self.saveBar = QProgressBar(self.saveIndicator)
        self.saveBar.setObjectName("saveProgressBar")
        self.saveBar.setRange(0, 1000)
        self.saveBar.setFixedWidth(190)
        self.saveBar.setTextVisible(True)
        self.saveCancelButton = QToolButton(self.saveIndicator)
        self.saveCancelButton.setObjectName("saveCancelButton")
        self.saveCancelButton.setText("Stop")
        row.addWidget(self.saveBar)
        row.addWidget(self.saveCancelButton)
        self.saveIndicator.hide()
        # always shown (enabled while a job runs): showing/hiding would re-lay out and
        # repaint the whole window on every job start and end
        for w in (self.modelLabel, self.paramsLabel, self.floatSizeLabel, self.currentSizeLabel):
            sb.addPermanentWidget(w)
        sb.addPermanentWidget(self.saveIndicator)
        sb.addPermanentWidget(self.progressBar)
        sb.addPermanentWidget(self.cancelButton)
        self.label = ""
        self._t0 = 0.0
        self._max = 0.0
        self.save_label = ""
        self._save_max = 0.0
        self._jobs: JobController | None = None
        self._saves: SessionActions | None = None
        self._cancel_action: QAction | None = None

    def serve(self, jobs: JobController, saves: SessionActions, cancel: QAction) -> None:
        """Show ``jobs``' runner on the main bar (its Cancel stops it) and ``saves``' save
        runner on the save indicator (its Stop stops the save); ``cancel`` (Esc) is enabled
        while either runs and stops the long job first."""
        self._jobs, self._saves, self._cancel_action = jobs, saves, cancel
        r = jobs.runner
        r.started.connect(self.job_started)
        r.progress.connect(self.job_progress)
        r.idle.connect(self.job_idle)
        r = saves.saveRunner
        r.started.connect(self.save_started)
        r.progress.connect(self.save_progress)
        r.idle.connect(self.save_idle)
        self.cancelButton.clicked.connect(jobs.cancel)
        self.saveCancelButton.clicked.connect(saves.cancel_save)

    def cancel(self) -> None:
        """Esc / Run > Cancel: stop the long job when one runs, else a running save."""
        if self._jobs is not None and self._jobs.runner.running:
            self._jobs.cancel()
        elif self._saves is not None:
            self._saves.cancel_save()

    def _update_cancel(self) -> None:
        act = self._cancel_action
        if act is None:
            return
        job = self._jobs is not None and self._jobs.runner.running
        save = self._saves is not None and self._saves.saving
        act.setEnabled(job or save)
        if job:
            act.setToolTip(f"Stop {_lower(self.label)} at its next step (Esc)")
        elif save:
            act.setToolTip(f"Stop {_lower(self.save_label)} (Esc)")
        else:
            act.setToolTip(IDLE_TIP)

    # -- the model and the current configuration -------------------------------------------
    def update_model(self) -> None:
        s = self.controller.session
        h = s.handle
        if h is None:
            self.modelLabel.setText("no model")
            for w in (self.paramsLabel, self.floatSizeLabel, self.currentSizeLabel):
                w.setText("")
            return
        self.modelLabel.setText(f"<b>{h.name}</b>")
        self.paramsLabel.setText(f"{human_count(h.total_params)} params")
        self.floatSizeLabel.setText(f"float {human_bytes(h.float_bytes)}")
        try:
            size, fl = self.controller.size_of()
            self.currentSizeLabel.setText(
                f"<b>{s.current_name}</b>: {human_bytes(size)} ({fl / size:.2f}× smaller)"
            )
        except ValueError as exc:
            self.currentSizeLabel.setText(f"size: {exc}")

    # -- progress ------------------------------------------------------------------------------
    def job_started(self, label: str) -> None:
        self.label = label
        self._t0 = time.monotonic()
        self._max = 0.0
        self.progressBar.setValue(0)
        self.progressBar.setFormat(self._fit(label, " %p%"))
        self.progressBar.setEnabled(True)
        self.cancelButton.setEnabled(True)
        self.cancelButton.setToolTip(f"Stop {_lower(label)} at its next step (Esc)")
        self.window.statusBar().showMessage(label)
        self._update_cancel()

    def job_idle(self) -> None:
        self.progressBar.setValue(0)
        self.progressBar.setFormat("idle")
        self.progressBar.setToolTip("")
        self.progressBar.setEnabled(False)
        self.cancelButton.setEnabled(False)
        self.cancelButton.setToolTip(IDLE_TIP)
        self._update_cancel()

    def job_progress(self, fraction: float, message: str) -> None:
        """Show ``fraction`` (never going backwards within a job) with the stage text and
        an estimate of the time left."""
        if math.isfinite(fraction):
            self._max = max(self._max, min(1.0, max(0.0, fraction)))
        v = int(1000 * self._max)
        if abs(v - self.progressBar.value()) >= 5 or v == 1000:  # repaint at most 200x
            self.progressBar.setValue(v)
        eta = ""
        elapsed = time.monotonic() - self._t0
        if 0.02 < self._max < 1.0 and elapsed > 2.0:
            left = elapsed * (1.0 - self._max) / self._max
            eta = f" · ~{left:.0f} s left" if left < 120 else f" · ~{left / 60:.0f} min left"
        head = f"{self.label}: {message}" if message else self.label
        fmt = self._fit(head, f" %p%{eta}")
        if fmt != self.progressBar.format():
            self.progressBar.setFormat(fmt)
            self.progressBar.setToolTip(f"{head} {self._max:.0%}{eta}")

    # -- a save (its own indicator) ------------------------------------------------------------
    def save_started(self, label: str) -> None:
        """``label`` (``Saving s.quantviz``) with its percentage; the stage is the tooltip."""
        self.save_label = label
        self._save_max = 0.0
        bar = self.saveBar
        bar.setValue(0)
        bar.setFormat(self._fit(label, " %p%", bar, Qt.TextElideMode.ElideMiddle))
        bar.setToolTip(label)
        self.saveCancelButton.setToolTip(
            f"Stop {_lower(label)}: the previous files stay as they were"
        )
        self.saveIndicator.show()
        self._update_cancel()

    def save_progress(self, fraction: float, message: str) -> None:
        if math.isfinite(fraction):
            self._save_max = max(self._save_max, min(1.0, max(0.0, fraction)))
        self.saveBar.setValue(int(1000 * self._save_max))
        head = f"{self.save_label}: {message}" if message else self.save_label
        self.saveBar.setToolTip(f"{head} {self._save_max:.0%}")

    def save_idle(self) -> None:
        self.saveIndicator.hide()
        self.saveBar.setValue(0)
        self._update_cancel()

    def _fit(
        self,
        head: str,
        tail: str,
        bar: QProgressBar | None = None,
        mode: Qt.TextElideMode = Qt.TextElideMode.ElideLeft,
    ) -> str:
        """``head + tail`` with ``head`` elided (at its start) to fit ``bar`` (the main bar)
        on one line (a long stage text wrapped to two clipped lines); the full text is the
        tooltip."""
        bar = self.progressBar if bar is None else bar
        fm = QFontMetrics(bar.font())
        room = bar.width() - fm.horizontalAdvance(tail.replace("%p%", "100%")) - 16
        return fm.elidedText(head, mode, max(room, 40)) + tail

    @property
    def fraction_shown(self) -> float:
        return self._max
