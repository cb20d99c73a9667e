"""The main window's status bar: the model's numbers, the current configuration's size, and
a monotone progress bar (stage, counts, ETA) with Cancel for background jobs."""

from __future__ import annotations

import math
import time
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QLabel, QMainWindow, QProgressBar, QPushButton

from quantviz.app import AppController
from quantviz.core.units import human_bytes, human_count

__all__ = ["StatusBar", "progress_text"]


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
        self.cancelButton.setToolTip("Stop the running job at its next step (Esc)")
        # always shown (enabled while a job runs): showing/hiding would re-lay out and
        # repaint the whole window on every job start and end
        for w in (self.modelLabel, self.paramsLabel, self.floatSizeLabel, self.currentSizeLabel):
            sb.addPermanentWidget(w)
        sb.addPermanentWidget(self.progressBar)
        sb.addPermanentWidget(self.cancelButton)
        self.label = ""
        self._t0 = 0.0
        self._max = 0.0

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
        self.window.statusBar().showMessage(label)

    def job_idle(self) -> None:
        self.progressBar.setValue(0)
        self.progressBar.setFormat("idle")
        self.progressBar.setEnabled(False)
        self.cancelButton.setEnabled(False)

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

    def _fit(self, head: str, tail: str) -> str:
        """``head + tail`` with ``head`` elided at its start to fit the bar on one line (a
        long stage text wrapped to two clipped lines); the full text is the tooltip."""
        bar = self.progressBar
        fm = QFontMetrics(bar.font())
        room = bar.width() - fm.horizontalAdvance(tail.replace("%p%", "100%")) - 16
        return fm.elidedText(head, Qt.TextElideMode.ElideLeft, max(room, 40)) + tail

    @property
    def fraction_shown(self) -> float:
        return self._max
