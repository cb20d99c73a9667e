"""The selected layer's input-activation histogram from the calibration statistics, with the
calibrated clipping range and the activation grid (when the layer's activations are
quantized). The numbers come from :meth:`quantviz.app.AppController.activation_view`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from quantviz.app import AppController
from quantviz.gui.plot_style import current_theme, style_plot
from quantviz.gui.workers import Runner

__all__ = ["ActivationView"]

LOG_FLOOR = 0.5


class ActivationView(QWidget):
    """``activationPlot``; ``updated(str)`` after a redraw (the layer's fqn or "")."""

    updated = Signal(str)
    #: capturing a fine-tuned configuration's statistics failed (the message)
    failed = Signal(str)

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        session = controller.session
        th = current_theme()
        self.plot = pg.PlotWidget(self)
        self.plot.setObjectName("activationPlot")
        style_plot(self.plot, "input activation value", "count")
        pi = self.plot.getPlotItem()
        pi.setTitle("Input activations", size="9pt")
        self.hist_item = pg.PlotDataItem(
            [0.0, 1.0],
            [0.0],
            stepMode="center",
            fillLevel=None,
            brush=pg.mkBrush(*th.hist),
            pen=pg.mkPen(th.hist_line),
        )
        self.range_item = pg.LinearRegionItem(
            (0, 0),
            movable=False,
            brush=pg.mkBrush(th.grid + "22"),
            pen=pg.mkPen(th.grid, width=1.5),
        )
        self.range_item.setZValue(-10)
        self.grid_item = pg.PlotDataItem([], [], connect="pairs", pen=pg.mkPen(th.grid))
        pi.addItem(self.range_item)
        pi.addItem(self.hist_item)
        pi.addItem(self.grid_item)
        self.logCheck = QCheckBox("Log count", self)
        self.logCheck.setObjectName("activationLogCheck")
        self.logCheck.setChecked(True)
        self.logCheck.toggled.connect(self._on_log)
        self.info = QLabel(self)
        self.info.setObjectName("activationInfoLabel")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("font-size: 8pt")
        row = QHBoxLayout()
        row.addWidget(self.info, 1)
        row.addWidget(self.logCheck, 0, Qt.AlignmentFlag.AlignTop)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot, 1)
        lay.addLayout(row)
        self._on_log(True)
        #: captures a fine-tuned configuration's statistics (controller.tuned_calibration_job)
        self.runner = Runner("tunedStatsRunner", self)
        self._tuned_job: Any = None
        self.runner.finished.connect(self._on_tuned_stats)
        self.runner.failed.connect(self._on_tuned_stats_failed)
        self.runner.cancelled.connect(self._on_tuned_stats_failed)
        for sig in (
            session.selection_changed,
            session.config_changed,
            session.activation_stats_changed,
            session.model_changed,
            session.data_changed,
        ):
            sig.connect(self.refresh)
        self.refresh()

    def apply_theme(self) -> None:
        """Re-colour every item for the current plot theme (light/dark switch)."""
        th = current_theme()
        style_plot(self.plot, "input activation value", "count")
        self.hist_item.setBrush(pg.mkBrush(*th.hist))
        self.hist_item.setPen(pg.mkPen(th.hist_line))
        self.range_item.setBrush(pg.mkBrush(th.grid + "22"))
        for line in self.range_item.lines:
            line.setPen(pg.mkPen(th.grid, width=1.5))
        self.grid_item.setPen(pg.mkPen(th.grid))
        self.refresh()

    def _on_log(self, on: bool) -> None:
        self.plot.getPlotItem().setLogMode(False, on)
        self.hist_item.setFillLevel(np.log10(LOG_FLOOR) if on else 0)
        self.refresh()

    def _blank(self, title: str, text: str) -> None:
        self.hist_item.setData([0.0, 1.0], [0.0])
        self.grid_item.setData([], [])
        self.range_item.setVisible(False)
        self.plot.getPlotItem().setTitle(title, size="9pt")
        self.info.setText(text)

    def _start_tuned_stats(self) -> None:
        """A fine-tuned configuration is current: capture its statistics (its weights in
        the model) in the background, once per weight set."""
        job = self.controller.tuned_calibration_job()
        if job is None:
            return
        self._tuned_job = job
        self.runner.start(job.label, job.factory)

    def _on_tuned_stats(self, stats: Any) -> None:
        job, self._tuned_job = self._tuned_job, None
        if job is not None:
            job.on_done(stats)

    def _on_tuned_stats_failed(self, exc: BaseException | None = None) -> None:
        job, self._tuned_job = self._tuned_job, None
        if job is not None:
            self.controller.collecting_tuned.discard(job.meta["tag"])
            if exc is not None:  # said once, not tried again for these weights
                self.controller.tuned_stats_failed[job.meta["tag"]] = str(exc)
                self.failed.emit(str(exc))
        if exc is not None:  # (a cancel: whoever cancelled redraws)
            self.refresh()

    def refresh(self, *_: Any) -> None:
        s = self.controller.session
        fqn = s.selection[0] if s.selection and s.handle is not None else None
        if fqn is not None and s.weights_tag():
            self._start_tuned_stats()
        d = self.controller.activation_view(fqn)
        if d.state != "ok":
            self._blank("Input activations", d.message)
            self.updated.emit(d.fqn)
            return
        assert d.counts is not None and d.edges is not None
        log = self.logCheck.isChecked()
        shown = np.where(d.counts > 0, d.counts, LOG_FLOOR) if log else d.counts
        self.hist_item.setData(d.edges, shown)
        self.plot.getPlotItem().setTitle(f"{fqn} input ({d.count:,} values)", size="9pt")
        spec = d.spec
        if spec is None or spec.dynamic or d.error or d.levels is None or d.clip is None:
            self.grid_item.setData([], [])
            self.range_item.setVisible(False)
            if d.error:
                self.info.setText(d.error)
            elif spec is None:
                self.info.setText(
                    f"range [{d.vmin:.3g}, {d.vmax:.3g}]; kept in float "
                    "(choose “Input activations” above to quantize)"
                )
            else:
                self.info.setText(f"A{spec.short()}: ranges measured per batch at run time")
            self.updated.emit(d.fqn)
            return
        top = float(d.counts.max()) if d.counts.size else 1.0
        x = np.repeat(d.levels, 2)
        y = np.empty_like(x)
        y[0::2] = 0.5 if log else 0.0
        y[1::2] = top * (1.6 if log else 1.04)
        self.grid_item.setData(x, y)
        lo, hi = d.clip
        self.range_item.setRegion((lo, hi))
        self.range_item.setVisible(True)
        self.info.setText(
            f"A{spec.short()}: calibrated range [{lo:.3g}, {hi:.3g}], {len(d.levels)} levels; "
            f"~{100 * d.clipped_fraction:.2f}% of calibration values clipped"
        )
        self.updated.emit(d.fqn)

    def level_count(self) -> int:
        x = self.grid_item.xData
        return 0 if x is None else len(x) // 2
