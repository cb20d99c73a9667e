"""The current configuration's model transforms: a checkbox each, undoable, and a button
that computes them (so the histogram shows the weights before and after)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from quantviz.app import AppController
from quantviz.core.spec import TRANSFORM_PARAMS, transform_label
from quantviz.gui.layout import SteadyLabel

__all__ = ["GUI_ORDER", "TransformsPanel"]

#: where a transform ticked in the panel goes in the list (hadamard before smoothquant,
#: whose inserted scales it cannot pass through; bias correction after the weight changes)
GUI_ORDER = ("fold_bn", "cle", "hadamard", "smoothquant", "bias_correction")

TIPS = {
    "fold_bn": "Fold each BatchNorm into the conv / linear before it (the inspector notes "
    "the folded layers).",
    "cle": "Cross-layer equalization (DFQ): scale the channels of conv / linear pairs with "
    "a ReLU-like between so both ranges meet (s = sqrt(r1/r2), iterated). Needs no data; "
    "pairs through ReLU6 are skipped (not scale-equivariant).",
    "hadamard": "Rotate with normalized Hadamard matrices fused into the weights: the "
    "residual stream of Llama-family decoders, linear pairs elsewhere.",
    "smoothquant": "Move activation outliers into the next linear layer's weights "
    "(per-channel scales from the calibration data; alpha sets the split).",
    "bias_correction": "Remove the mean output shift that quantized weights cause "
    "(measured on the calibration data, layer by layer).",
}


class TransformsPanel(QGroupBox):
    """Signals: ``transformsEdited(list)`` (the new transform list), ``computeRequested()``."""

    transformsEdited = Signal(object)
    computeRequested = Signal()

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__("Transforms (before quantization)", parent)
        self.setObjectName("transformsPanel")
        self.controller = controller
        self.session = s = controller.session
        self.checks: dict[str, QCheckBox] = {}
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        for i, name in enumerate(GUI_ORDER):
            cb = QCheckBox(name, self)
            cb.setObjectName(f"transform_{name}")
            cb.setToolTip(TIPS[name])
            cb.toggled.connect(self._edited)
            self.checks[name] = cb
            row.addWidget(cb)
            if i == 2:
                lay.addLayout(row)
                row = QHBoxLayout()
        self.alphaSpin = QDoubleSpinBox(self)
        self.alphaSpin.setObjectName("smoothquantAlphaSpin")
        self.alphaSpin.setRange(0.0, 1.0)
        self.alphaSpin.setSingleStep(0.05)
        self.alphaSpin.setPrefix("alpha ")
        self.alphaSpin.setValue(TRANSFORM_PARAMS["smoothquant"]["alpha"][1])
        self.alphaSpin.setToolTip("SmoothQuant's migration strength (0: none, 1: all)")
        # typed digits apply on Return / focus out: applied per key, "0" of "0.8" set the
        # config to 0.00 and the refresh then rewrote the text under the cursor
        self.alphaSpin.setKeyboardTracking(False)
        self.alphaSpin.valueChanged.connect(self._edited)
        row.addWidget(self.alphaSpin)
        row.addStretch(1)
        lay.addLayout(row)
        self.computeButton = QPushButton("Compute", self)
        self.computeButton.setObjectName("computeTransformsButton")
        self.computeButton.setToolTip(
            "Compute the transforms and AdaRound / GPTQ roundings on the calibration data, "
            "so the histogram shows the weights after them (an evaluation computes them too)"
        )
        self.computeButton.clicked.connect(self.computeRequested.emit)
        self.notesLabel = SteadyLabel("", self)
        self.notesLabel.setObjectName("transformNotesLabel")
        self.notesLabel.setWordWrap(True)
        self.notesLabel.setTextFormat(Qt.TextFormat.PlainText)
        self.notesLabel.setStyleSheet("font-size: 8pt")
        bottom = QHBoxLayout()
        bottom.addWidget(self.computeButton)
        bottom.addWidget(self.notesLabel, 1)
        lay.addLayout(bottom)
        s.config_changed.connect(self.refresh)
        s.selection_changed.connect(self.refresh)
        s.selection_changed.connect(self.notesLabel.release)  # after the new layer's note
        s.model_changed.connect(self.refresh)
        self.refresh()

    def current(self) -> list[Any]:
        """The transform list the widgets show (the config's order kept, new ones placed by
        :data:`GUI_ORDER`)."""
        on = {n for n, cb in self.checks.items() if cb.isChecked()}
        old = [n for n in self.session.config.transform_names if n in on]
        new = sorted(on - set(old), key=GUI_ORDER.index)
        names = list(old)
        for n in new:
            after = [i for i, o in enumerate(names) if GUI_ORDER.index(o) < GUI_ORDER.index(n)]
            names.insert(after[-1] + 1 if after else 0, n)
        out: list[Any] = []
        for n in names:
            if n == "smoothquant":
                out.append({n: {"alpha": round(self.alphaSpin.value(), 4)}})
            elif n in self.session.config.transform_names:
                out.append((n, self.session.config.transform_params(n)))
            else:
                out.append(n)
        return out

    def _edited(self, *_: Any) -> None:
        if self.session.handle is None:
            return
        self.transformsEdited.emit(self.current())

    def refresh(self, *_: Any) -> None:
        cfg = self.session.config
        has = self.session.handle is not None
        blockers = [QSignalBlocker(w) for w in (*self.checks.values(), self.alphaSpin)]
        try:
            for n, cb in self.checks.items():
                cb.setChecked(n in cfg.transform_names)
                cb.setEnabled(has)
            if "smoothquant" in cfg.transform_names:
                self.alphaSpin.setValue(cfg.transform_params("smoothquant")["alpha"])
        finally:
            for b in blockers:
                b.unblock()
        self.alphaSpin.setEnabled(has and self.checks["smoothquant"].isChecked())
        self.computeButton.setEnabled(has)
        self.update_notes()

    def _note(self, text: str) -> None:
        """Show ``text`` under Compute; the tooltip holds it whole where the panel is short."""
        self.notesLabel.setText(text)
        self.notesLabel.setToolTip(text)

    def update_notes(self) -> None:
        """What the transforms did to the selected layer (once computed)."""
        sel = self.session.selection
        label = transform_label(self.session.config.transforms) or "no transforms"
        if not sel or self.session.handle is None:
            self._note(label)
            return
        try:
            st = self.controller.transform_state(compute=False)
        except ValueError as exc:
            self._note(f"{label}: {exc}")
            return
        if st is None:
            pending = bool(self.session.config.transforms)
            self._note(label + (" (not computed yet)" if pending else ""))
            return
        notes = st.notes.get(sel[0], [])
        self._note(f"{sel[0]}: " + ("; ".join(notes) if notes else "unchanged"))
