"""The selected layer's input-activation histogram from the calibration statistics, with the
calibrated clipping range and the activation grid (when the layer's activations are
quantized). The numbers come from :meth:`quantviz.app.AppController.activation_view`.

With model transforms in the configuration (smoothquant, hadamard, cle ...) the view shows
the input *before* (the float model) and *after* the transforms (captured under them on the
calibration data by the transforms job: the "Capture after transforms" button or the
transforms panel's Compute), each with its own grid, in a legend, and a label comparing
max|x| and kurtosis before vs after (the tail that the remedy shrinks)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from quantviz.app import AppController
from quantviz.app.activation import ActivationData, integer_input
from quantviz.gui.layout import SteadyLabel
from quantviz.gui.plot_style import current_theme, set_fitted_title, style_plot
from quantviz.gui.workers import Runner

__all__ = ["ActivationView"]

LOG_FLOOR = 0.5
#: the histogram's least height (px): on a 1366 x 768 screen the notes under it would take all
PLOT_MIN_HEIGHT = 120


def _after_colour() -> str:
    """The "after the transforms" colour: apart from the histogram's and the grid's."""
    return current_theme().series[2]


class ActivationView(QWidget):
    """``activationPlot``; ``updated(str)`` after a redraw (the layer's fqn or "");
    ``captureRequested()`` when the user asks for the activations after the transforms."""

    updated = Signal(str)
    captureRequested = Signal()
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
        # the input after the configuration's transforms, and the grid fitted to it
        self.after_item = pg.PlotDataItem(
            [0.0, 1.0], [0.0], stepMode="center", pen=pg.mkPen(_after_colour(), width=1.8)
        )
        self.after_grid_item = pg.PlotDataItem(
            [], [], connect="pairs", pen=pg.mkPen(_after_colour(), width=1.5)
        )
        self.after_item.setZValue(5)
        pi.addItem(self.range_item)
        pi.addItem(self.hist_item)
        pi.addItem(self.grid_item)
        pi.addItem(self.after_item)
        pi.addItem(self.after_grid_item)
        self.legend = pi.addLegend(offset=(4, 4), labelTextSize="7pt", verSpacing=-6)
        self.legend.setBrush(pg.mkBrush(th.background + "d0"))
        self.legend.setVisible(False)
        self.after: ActivationData | None = None
        # steady too: it empties when a transform is unticked (the panels jumped ~19 px)
        self.compareLabel = SteadyLabel("", self, collapse=True)
        self.compareLabel.setObjectName("activationCompareLabel")
        self.compareLabel.setStyleSheet("font-size: 8pt")
        self.captureButton = QPushButton("Capture after", self)
        self.captureButton.setObjectName("activationCaptureButton")
        self.captureButton.setToolTip(
            "The input after the configuration's transforms is not captured yet: run the "
            "calibration data through the transformed model and show each layer's input "
            "before and after (in the background; also the Transforms panel's Compute)"
        )
        self.captureButton.clicked.connect(self.captureRequested.emit)
        self.captureButton.setVisible(False)
        # ticking a transform shows it: its room is kept while hidden, so the notes beside it
        # keep their width and height and the transforms panel above does not move under
        # the pointer (it grew by ~50 px on a small screen)
        policy = self.captureButton.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.captureButton.setSizePolicy(policy)
        self.logCheck = QCheckBox("Log count", self)
        self.logCheck.setObjectName("activationLogCheck")
        self.logCheck.setChecked(True)
        self.logCheck.toggled.connect(self._on_log)
        self.info = SteadyLabel("", self)
        self.info.setObjectName("activationInfoLabel")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("font-size: 8pt")
        row = QHBoxLayout()
        row.addWidget(self.info, 1)
        row.addWidget(self.captureButton, 0, Qt.AlignmentFlag.AlignTop)
        row.addWidget(self.logCheck, 0, Qt.AlignmentFlag.AlignTop)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        # the notes below wrap to several lines on a short screen: without a floor they took
        # the whole pane and the histogram had no height (the layer controls scroll instead)
        self.plot.setMinimumHeight(PLOT_MIN_HEIGHT)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.compareLabel)
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
        for label in (self.info, self.compareLabel):  # after the new layer's text
            session.selection_changed.connect(label.release)
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
        self.after_item.setPen(pg.mkPen(_after_colour(), width=1.8))
        self.after_grid_item.setPen(pg.mkPen(_after_colour(), width=1.5))
        self.legend.setBrush(pg.mkBrush(th.background + "d0"))
        self.refresh()

    def _on_log(self, on: bool) -> None:
        self.plot.getPlotItem().setLogMode(False, on)
        self.hist_item.setFillLevel(np.log10(LOG_FLOOR) if on else 0)
        self.refresh()

    def _blank(self, title: str, text: str) -> None:
        self.hist_item.setData([0.0, 1.0], [0.0])
        self.grid_item.setData([], [])
        self.range_item.setVisible(False)
        self._draw_after(None, "")
        self.captureButton.setVisible(False)
        set_fitted_title(self.plot, title, "9pt")
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
        self.hist_item.setData(d.edges, self._shown(d.counts))
        set_fitted_title(self.plot, f"{fqn} input ({d.count:,} values)", "9pt")
        top = float(d.counts.max()) if d.counts.size else 1.0
        if d.after is not None and d.after.counts is not None and d.after.counts.size:
            top = max(top, float(d.after.counts.max()))
        spec = d.spec
        h = self.controller.session.handle
        ids = h is not None and integer_input(h.layer(d.fqn))
        # integer ids are the same numbers after any transform: nothing to capture
        self.captureButton.setVisible(d.after_state == "pending" and not ids)
        if ids or spec is None or spec.dynamic or d.error or d.levels is None or d.clip is None:
            self.grid_item.setData([], [])
            self.range_item.setVisible(False)
            if d.error:
                self.info.setText(d.error)
            elif ids:  # evaluation passes integer inputs through: no grid to show
                self.info.setText(
                    f"range [{d.vmin:.3g}, {d.vmax:.3g}]; integer ids (an embedding's input) "
                    "are never quantized"
                    + (f": A{spec.short()} does not apply here" if spec is not None else "")
                )
            elif spec is None:
                self.info.setText(
                    f"range [{d.vmin:.3g}, {d.vmax:.3g}]; kept in float "
                    "(choose “Input activations” above to quantize)"
                )
            else:
                self.info.setText(f"A{spec.short()}: ranges measured per batch at run time")
            self._draw_after(d, "", top)
            self.updated.emit(d.fqn)
            return
        band = 0 if d.after is None else 1
        self.grid_item.setData(*self._grid_xy(d.levels, top, log, band))
        lo, hi = d.clip
        self.range_item.setRegion((lo, hi))
        self.range_item.setVisible(True)
        text = (
            f"A{spec.short()}: calibrated range [{lo:.3g}, {hi:.3g}], {len(d.levels)} levels; "
            f"~{100 * d.clipped_fraction:.2f}% of calibration values clipped"
        )
        self.info.setText(("before: " if d.after is not None else "") + text)
        self._draw_after(d, spec.short(), top)
        self.updated.emit(d.fqn)

    def _shown(self, counts: np.ndarray) -> np.ndarray:
        log = self.logCheck.isChecked()
        return np.where(counts > 0, counts, LOG_FLOOR) if log else counts

    @staticmethod
    def _grid_xy(
        levels: np.ndarray, top: float, log: bool, band: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """One vertical line per level: full height (``band`` 0), or with a before and an
        after grid, ticks in the lower (1: before) or upper (2: after) band of the plot, so
        that neither hides the other nor the histograms."""
        x = np.repeat(levels, 2)
        y = np.empty_like(x)
        hi = top * (1.6 if log else 1.04)
        lo = LOG_FLOOR if log else 0.0
        if band:
            if log:  # bands in log space: the lower and upper eighths of the height
                span = np.log10(hi) - np.log10(lo)
                a, b = (0.0, 0.12) if band == 1 else (0.88, 1.0)
                lo, hi = lo * 10 ** (a * span), lo * 10 ** (b * span)
            else:
                lo, hi = (0.0, 0.12 * hi) if band == 1 else (0.88 * hi, hi)
        y[0::2] = lo
        y[1::2] = hi
        return x, y

    def _draw_after(self, d: ActivationData | None, scheme: str, top: float = 1.0) -> None:
        """The input after the transforms (``d.after``), its grid, the legend and the
        before/after label; all hidden when there is none."""
        a = None if d is None else d.after
        self.after = a
        self.legend.clear()
        if d is None or a is None or a.counts is None or a.edges is None:
            self.after_item.setData([0.0, 1.0], [0.0])
            self.after_item.setVisible(False)
            self.after_grid_item.setData([], [])
            self.legend.setVisible(False)
            # "not captured yet" is the Capture button itself (a line of text here moved
            # the panels above when a transform was ticked); an emptied line keeps its room
            # until released, then hides (SteadyLabel collapse)
            self.compareLabel.setText("")
            return
        self.after_item.setData(a.edges, self._shown(a.counts))
        self.after_item.setVisible(True)
        have_grid = a.levels is not None and a.clip is not None and not a.error
        if have_grid:
            assert a.levels is not None
            log = self.logCheck.isChecked()
            self.after_grid_item.setData(*self._grid_xy(a.levels, top, log, 2))
        else:
            self.after_grid_item.setData([], [])
        self.legend.addItem(self.hist_item, "before")
        self.legend.addItem(self.after_item, a.label)
        if len(self.grid_item.xData if self.grid_item.xData is not None else []):
            self.legend.addItem(self.grid_item, "grid before (lower ticks)")
        if have_grid:
            self.legend.addItem(self.after_grid_item, "grid after (upper ticks)")
        self.legend.setVisible(True)
        kb, ka = d.kurtosis, a.kurtosis
        text = (
            f"{a.label}: max|x| {d.absmax:.3g} → {a.absmax:.3g} "
            f"({a.absmax / d.absmax:.2f}×), kurtosis {kb:.3g} → {ka:.3g}"
            if d.absmax > 0
            else f"{a.label}: max|x| {d.absmax:.3g} → {a.absmax:.3g}, kurtosis {kb:.3g} → {ka:.3g}"
        )
        if have_grid:
            assert a.clip is not None
            text += (
                f"; after: range [{a.clip[0]:.3g}, {a.clip[1]:.3g}], "
                f"~{100 * a.clipped_fraction:.2f}% clipped"
            )
        self.compareLabel.setText(text)

    def after_level_count(self) -> int:
        x = self.after_grid_item.xData
        return 0 if x is None else len(x) // 2

    def legend_labels(self) -> list[str]:
        """The legend's entries as shown."""
        return (
            [label.text for _sample, label in self.legend.items] if self.legend.isVisible() else []
        )

    def level_count(self) -> int:
        x = self.grid_item.xData
        return 0 if x is None else len(x) // 2
