"""Controls for the selected layer(s): the weight or activation spec, live.

Widgets never own state: an edit builds a ``QuantSpec`` from the widgets and emits
:attr:`LayerControls.specEdited` (the main window turns it into an undoable session
change); session changes are mirrored back into the widgets inside ``QSignalBlocker``s.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from quantviz.core.spec import CALIBRATIONS, FIXED_WIDTH, GRANULARITIES, QUANTIZERS, QuantSpec
from quantviz.session import Session

__all__ = ["LayerControls"]

_GRAN_LABELS = {"per_tensor": "per tensor", "per_channel": "per channel", "per_group": "per group"}


class LayerControls(QWidget):
    """Spec editor for the session's selected layers.

    Signals: ``specEdited(side, spec_or_None)``, ``applyAllRequested(side, spec_or_None)``,
    ``resetRequested()``, ``sideChanged(side)``.
    """

    specEdited = Signal(str, object)
    applyAllRequested = Signal(str, object)
    resetRequested = Signal()
    sideChanged = Signal(str)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.side = "weight"
        self._base = QuantSpec()

        self.title = QLabel("No layer selected", self)
        self.title.setObjectName("controlsTitle")
        self.title.setWordWrap(True)

        self.weightRadio = QRadioButton("Weights", self)
        self.weightRadio.setObjectName("weightRadio")
        self.activationRadio = QRadioButton("Input activations", self)
        self.activationRadio.setObjectName("activationRadio")
        self.weightRadio.setChecked(True)
        grp = QButtonGroup(self)
        grp.addButton(self.weightRadio)
        grp.addButton(self.activationRadio)
        self.weightRadio.toggled.connect(self._on_side)

        self.floatCheck = QCheckBox("Keep in float", self)
        self.floatCheck.setObjectName("keepFloatCheck")
        self.bitsSpin = QSpinBox(self)
        self.bitsSpin.setObjectName("bitsSpin")
        self.bitsSpin.setRange(1, 16)
        self.bitsSpin.setSuffix(" bits")
        self.quantizerCombo = QComboBox(self)
        self.quantizerCombo.setObjectName("quantizerCombo")
        self.quantizerCombo.addItems(list(QUANTIZERS))
        self.symmetricCheck = QCheckBox("Symmetric", self)
        self.symmetricCheck.setObjectName("symmetricCheck")
        self.restrictedRangeCheck = QCheckBox("Restricted range", self)
        self.restrictedRangeCheck.setObjectName("restrictedRangeCheck")
        self.granularityCombo = QComboBox(self)
        self.granularityCombo.setObjectName("granularityCombo")
        for g in GRANULARITIES:
            self.granularityCombo.addItem(_GRAN_LABELS[g], g)
        self.groupSizeSpin = QSpinBox(self)
        self.groupSizeSpin.setObjectName("groupSizeSpin")
        self.groupSizeSpin.setRange(1, 1 << 16)
        self.groupSizeSpin.setValue(128)
        self.calibrationCombo = QComboBox(self)
        self.calibrationCombo.setObjectName("calibrationCombo")
        self.calibrationCombo.addItems(list(CALIBRATIONS))

        self.applyAllButton = QPushButton("Apply to all layers", self)
        self.applyAllButton.setObjectName("applyAllButton")
        self.applyAllButton.setToolTip(
            "Use this scheme for every layer (the default and overrides)"
        )
        self.resetButton = QPushButton("Reset to default", self)
        self.resetButton.setObjectName("resetButton")
        self.resetButton.setToolTip("Make the selected layers follow the configuration's default")

        side_row = QHBoxLayout()
        side_row.addWidget(self.weightRadio)
        side_row.addWidget(self.activationRadio)
        side_row.addStretch(1)
        box = QGroupBox("Quantization", self)
        form = QFormLayout(box)
        form.addRow(self.floatCheck)
        form.addRow("Bits", self.bitsSpin)
        form.addRow("Quantizer", self.quantizerCombo)
        sym_row = QHBoxLayout()
        sym_row.addWidget(self.symmetricCheck)
        sym_row.addWidget(self.restrictedRangeCheck)
        form.addRow(sym_row)
        form.addRow("Granularity", self.granularityCombo)
        form.addRow("Group size", self.groupSizeSpin)
        form.addRow("Calibration", self.calibrationCombo)
        btn_row = QHBoxLayout()
        btn_row.addWidget(self.applyAllButton)
        btn_row.addWidget(self.resetButton)

        lay = QVBoxLayout(self)
        lay.addWidget(self.title)
        lay.addLayout(side_row)
        lay.addWidget(box)
        lay.addLayout(btn_row)
        lay.addStretch(1)

        self.floatCheck.toggled.connect(self._edited)
        self.bitsSpin.valueChanged.connect(self._edited)
        self.quantizerCombo.currentIndexChanged.connect(self._edited)
        self.symmetricCheck.toggled.connect(self._edited)
        self.restrictedRangeCheck.toggled.connect(self._edited)
        self.granularityCombo.currentIndexChanged.connect(self._edited)
        self.groupSizeSpin.valueChanged.connect(self._edited)
        self.calibrationCombo.currentIndexChanged.connect(self._edited)
        self.applyAllButton.clicked.connect(
            lambda: self.applyAllRequested.emit(self.side, self.current_spec())
        )
        self.resetButton.clicked.connect(self.resetRequested.emit)

        session.selection_changed.connect(self.refresh)
        session.config_changed.connect(self.refresh)
        session.model_changed.connect(self.refresh)
        self.refresh()

    # -- widgets -> spec --------------------------------------------------------------------
    def _value_widgets(self) -> list[QWidget]:
        return [
            self.bitsSpin,
            self.quantizerCombo,
            self.symmetricCheck,
            self.restrictedRangeCheck,
            self.granularityCombo,
            self.groupSizeSpin,
            self.calibrationCombo,
        ]

    def current_spec(self) -> QuantSpec | None:
        """The spec the widgets show (None when "keep in float" is checked)."""
        if self.floatCheck.isChecked():
            return None
        q = self.quantizerCombo.currentText()
        sym = self.symmetricCheck.isChecked()
        return self._base.with_(
            bits=self.bitsSpin.value() if q not in FIXED_WIDTH else FIXED_WIDTH[q],
            quantizer=q,
            symmetric=sym,
            restricted_range=self.restrictedRangeCheck.isChecked() and sym,
            granularity=self.granularityCombo.currentData(),
            group_size=self.groupSizeSpin.value(),
            calibration=self.calibrationCombo.currentText(),
        )

    def _edited(self, *_: Any) -> None:
        spec = self.current_spec()
        self._update_enabled(spec)
        if self.session.selection:
            self.specEdited.emit(self.side, spec)

    def _on_side(self, *_: Any) -> None:
        self.side = "weight" if self.weightRadio.isChecked() else "activation"
        self.sideChanged.emit(self.side)
        self.refresh()

    # -- session -> widgets -----------------------------------------------------------------
    def refresh(self, *_: Any) -> None:
        """Show the selected layers' spec (of the first one) for the current side."""
        sel = self.session.selection
        has = bool(sel) and self.session.handle is not None
        if not has:
            self.title.setText("Select a layer in the table to edit how it is quantized.")
        elif len(sel) == 1:
            self.title.setText(f"<b>{sel[0]}</b>")
        else:
            self.title.setText(f"<b>{len(sel)} layers</b> (showing {sel[0]})")
        spec = self.session.config.resolve(sel[0]).__getattribute__(self.side) if has else None
        if spec is None and not has:
            spec = self.session.config.default.weight
        self.set_spec(spec)
        for w in [self.floatCheck, *self._value_widgets(), self.applyAllButton, self.resetButton]:
            w.setEnabled(has)
        if has:
            self._update_enabled(spec)

    def set_spec(self, spec: QuantSpec | None) -> None:
        """Show ``spec`` in the widgets without emitting edits."""
        shown = spec if spec is not None else self._base
        self._base = shown
        blockers = [QSignalBlocker(w) for w in [self.floatCheck, *self._value_widgets()]]
        try:
            self.floatCheck.setChecked(spec is None)
            self.bitsSpin.setValue(shown.bits)
            self.quantizerCombo.setCurrentText(shown.quantizer)
            self.symmetricCheck.setChecked(shown.symmetric)
            self.restrictedRangeCheck.setChecked(shown.restricted_range)
            self.granularityCombo.setCurrentIndex(GRANULARITIES.index(shown.granularity))
            self.groupSizeSpin.setValue(shown.group_size)
            self.calibrationCombo.setCurrentText(shown.calibration)
        finally:
            for b in blockers:
                b.unblock()
        self._update_enabled(spec)

    def _update_enabled(self, spec: QuantSpec | None) -> None:
        on = spec is not None and bool(self.session.selection)
        for w in self._value_widgets():
            w.setEnabled(on)
        if spec is None:
            return
        self.bitsSpin.setEnabled(on and spec.quantizer not in FIXED_WIDTH)
        self.symmetricCheck.setEnabled(on and spec.quantizer == "uniform")
        self.restrictedRangeCheck.setEnabled(on and spec.quantizer == "uniform" and spec.symmetric)
        self.groupSizeSpin.setEnabled(on and spec.granularity == "per_group")
        self.calibrationCombo.setEnabled(on and spec.quantizer != "kmeans")
