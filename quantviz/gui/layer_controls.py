"""Controls for the selected layer(s): the weight or activation spec, live.

Widgets never own state: an edit builds a ``QuantSpec`` from the widgets and emits
:attr:`LayerControls.specEdited` (the main window turns it into an undoable session
change); session changes are mirrored back into the widgets inside ``QSignalBlocker``s.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QSignalBlocker, Signal
from PySide6.QtGui import QKeySequence
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

from quantviz.app import AppController
from quantviz.core.granularity import fitting_group_size, group_sizes
from quantviz.core.spec import (
    BLOCK_FORMATS,
    CALIBRATIONS,
    FIXED_WIDTH,
    GRANULARITIES,
    QUANTIZERS,
    ROUNDINGS,
    QuantSpec,
)

__all__ = ["LayerControls"]

_GRAN_LABELS = {"per_tensor": "per tensor", "per_channel": "per channel", "per_group": "per group"}
_DEFAULT_GROUP = QuantSpec().group_size
_SIDE_DEFAULT = {"weight": QuantSpec(granularity="per_channel"), "activation": QuantSpec()}

TIPS = {
    "float": "Leave this tensor unquantized (float). The layer's weights or inputs keep "
    "their full precision.",
    "bits": "Code width. 2^bits levels for uniform, log2 and k-means; FP8, FP4 and NF4 fix "
    "their own width.",
    "quantizer": "uniform: an affine integer grid; log2: zero and signed powers of two; "
    "kmeans: 2^bits levels fitted to the values (Lloyd); fp8_e4m3 / fp8_e5m2 / fp4_e2m1: OCP "
    "float formats; nf4: QLoRA's NormalFloat-4 levels; mxfp8_e4m3 / mxfp6_* / mxfp4 / mxint8: OCP "
    "MX block formats (32 values share a power-of-two scale); nvfp4: NVIDIA's FP4 with an "
    "E4M3 scale per 16 values and one per tensor.",
    "symmetric": "Uniform only. Symmetric: zero point 0, range [-a, a]. Asymmetric: the range "
    "[min, max] with an integer zero point (zero stays exactly representable).",
    "restricted": "Symmetric uniform only: codes [-(2^(b-1)-1), 2^(b-1)-1], dropping the "
    "most negative code so the grid is symmetric around zero.",
    "granularity": "One scale for the whole tensor, one per output channel, or one per "
    "contiguous group of weights along a row.",
    "group": "Weights per group (per group only); must divide the layer's row length.",
    "rounding": "Weights of the uniform quantizer: nearest level, AdaRound (each weight "
    "rounded up or down as learned from the calibration data) or GPTQ (columns quantized in "
    "order, each one's error spread over the rest through the inverse Hessian of the "
    "layer's inputs). Same grid; computed when the configuration is evaluated.",
    "calibration": "How the clipping range is chosen: min/max of the values, a percentile, "
    "the range minimising the quantization MSE, or KL (TensorRT's entropy calibration). "
    "With min/max a few values can still clip, as in torch.ao: the symmetric scale is "
    "max|x|/127.5 at 8 bits (codes stop at +127, half a step short of the largest positive "
    "value), and an asymmetric grid's zero point is rounded to an integer (as torch.ao "
    "does), shifting the grid by up to half a step.",
}


class LayerControls(QWidget):
    """Spec editor for the session's selected layers.

    Signals: ``specEdited(side, spec_or_None)``, ``applyAllRequested(side, spec_or_None)``,
    ``resetRequested()``, ``sideChanged(side)``.
    """

    specEdited = Signal(str, object)
    applyAllRequested = Signal(str, object)
    resetRequested = Signal()
    sideChanged = Signal(str)

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.session = session = controller.session
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
        self.roundingCombo = QComboBox(self)
        self.roundingCombo.setObjectName("roundingCombo")
        self.roundingCombo.addItems(list(ROUNDINGS))
        self.groupHint = QLabel("", self)
        self.groupHint.setObjectName("groupHint")
        self.groupHint.setWordWrap(True)
        self.groupHint.setStyleSheet("font-size: 8pt")
        for w, key in (
            (self.floatCheck, "float"),
            (self.bitsSpin, "bits"),
            (self.quantizerCombo, "quantizer"),
            (self.symmetricCheck, "symmetric"),
            (self.restrictedRangeCheck, "restricted"),
            (self.granularityCombo, "granularity"),
            (self.groupSizeSpin, "group"),
            (self.calibrationCombo, "calibration"),
            (self.roundingCombo, "rounding"),
        ):
            w.setToolTip(TIPS[key])
        self.weightRadio.setToolTip("Edit how the selected layers' weights are quantized")
        self.activationRadio.setToolTip(
            "Edit how the selected layers' input activations are quantized (calibrated on "
            "the calibration data, or measured per batch)"
        )

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
        form.addRow(self.groupHint)
        form.addRow("Calibration", self.calibrationCombo)
        form.addRow("Rounding", self.roundingCombo)
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
        self.roundingCombo.currentIndexChanged.connect(self._edited)
        self.applyAllButton.clicked.connect(
            lambda: self.applyAllRequested.emit(self.side, self.current_spec())
        )
        self.resetButton.clicked.connect(self.resetRequested.emit)

        session.selection_changed.connect(self.refresh)
        session.config_changed.connect(self.refresh)
        session.model_changed.connect(self.refresh)
        # a spin box's own text undo would swallow Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y: the edit
        # was committed to the configuration, so the window's Undo / Redo must get them
        for spin in (self.bitsSpin, self.groupSizeSpin):
            spin.installEventFilter(self)
            spin.lineEdit().installEventFilter(self)
        self.refresh()

    def eventFilter(self, obj: Any, event: Any) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and (
            event.matches(QKeySequence.StandardKey.Undo)
            or event.matches(QKeySequence.StandardKey.Redo)
            or event.keyCombination().toCombined()
            in (
                QKeySequence("Ctrl+Y")[0].toCombined(),
                QKeySequence("Ctrl+Shift+Z")[0].toCombined(),
            )
        ):
            event.ignore()  # not overridden: the application's shortcut fires
            return True
        return super().eventFilter(obj, event)

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
            self.roundingCombo,
        ]

    def _row_lens(self) -> list[int]:
        h = self.session.handle
        if h is None:
            return []
        out = []
        for f in self.session.selection:
            shape = h.layer(f).weight_shape
            n = 1
            for d in shape:
                n *= d
            out.append(n // shape[0] if shape and shape[0] else n)
        return out

    def current_spec(self) -> QuantSpec | None:
        """The spec the widgets show (None when "keep in float" is checked).

        Fields that do not apply are not copied from the widgets: the group size only for
        per-group, restricted range only when symmetric; a bit-width the quantizer cannot
        take (1-bit log2, 1-bit restricted range) is raised to the smallest it can.
        """
        if self.floatCheck.isChecked():
            return None
        q = self.quantizerCombo.currentText()
        sym = self.symmetricCheck.isChecked()
        gran = self.granularityCombo.currentData()
        restricted = self.restrictedRangeCheck.isChecked() and sym and q == "uniform"
        bits = FIXED_WIDTH.get(q, self.bitsSpin.value())
        if bits < 2 and (q == "log2" or restricted):
            bits = 2
        # the group size does not apply outside per_group: keep the default's, so switching
        # per_group -> 64 -> per_tensor leaves the spec equal to a plain per_tensor one
        group = self.groupSizeSpin.value() if gran == "per_group" else _DEFAULT_GROUP
        calibration = self.calibrationCombo.currentText()
        if q in BLOCK_FORMATS:  # the format fixes its blocks and its scale rule
            gran, group, calibration = "per_group", BLOCK_FORMATS[q], "minmax"
        rounding = self.roundingCombo.currentText()
        if self.side != "weight" or q != "uniform":
            rounding = "nearest"  # AdaRound / GPTQ round weights on a uniform grid
        return self._base.with_(
            bits=bits,
            quantizer=q,
            symmetric=sym,
            restricted_range=restricted,
            granularity=gran,
            group_size=group,
            calibration=calibration,
            rounding=rounding,
        )

    def _edited(self, *_: Any) -> None:
        sender = self.sender()
        gran = self.granularityCombo.currentData()
        if sender is self.granularityCombo and gran == "per_group":
            # a group size that fits every selected layer's rows
            lens = self._row_lens()
            if lens and any(n % self.groupSizeSpin.value() for n in lens):
                with QSignalBlocker(self.groupSizeSpin):
                    self.groupSizeSpin.setValue(fitting_group_size(lens))
        spec = self.current_spec()
        if spec is not None and spec.bits != self.bitsSpin.value():
            with QSignalBlocker(self.bitsSpin):
                self.bitsSpin.setValue(spec.bits)
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
        refusal = self.controller.activation_refusal(self.session.handle)
        self.activationRadio.setEnabled(not refusal)
        if refusal:
            self.activationRadio.setToolTip(f"Not available for this model: {refusal}")
            if self.side == "activation":
                with QSignalBlocker(self.weightRadio):
                    self.weightRadio.setChecked(True)
                self.side = "weight"
        spec = getattr(self.session.config.resolve(sel[0]), self.side) if has else None
        if spec is None and not has:
            spec = self.session.config.default.weight
        if spec is None:
            # what unticking "keep in float" starts from: the default's scheme for this side,
            # per tensor for activations (a static range is one per tensor)
            d = getattr(self.session.config.default, self.side)
            self._base = d if d is not None else _SIDE_DEFAULT[self.side]
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
            self.roundingCombo.setCurrentText(shown.rounding)
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
        block = spec.quantizer in BLOCK_FORMATS
        self.granularityCombo.setEnabled(on and not block)
        self.groupSizeSpin.setEnabled(on and spec.granularity == "per_group" and not block)
        self.calibrationCombo.setEnabled(on and spec.quantizer != "kmeans" and not block)
        self.roundingCombo.setEnabled(on and self.side == "weight" and spec.quantizer == "uniform")
        self._update_group_hint(spec)

    def _update_group_hint(self, spec: QuantSpec | None) -> None:
        lens = sorted(set(self._row_lens()))
        if spec is None or spec.granularity != "per_group" or not lens:
            self.groupHint.setText("")
            self.groupHint.setVisible(False)
            return
        divs = group_sizes(lens)
        shown = ", ".join(map(str, divs[-8:]))
        bad = [n for n in lens if n % spec.group_size]
        rows = "rows of " + ", ".join(map(str, lens[:4])) + ("…" if len(lens) > 4 else "")
        text = f"{rows}: group sizes that fit: {shown}"
        if bad:
            text = f"<b>{spec.group_size} does not divide {bad[0]}</b>; {text}"
        self.groupHint.setText(text)
        self.groupHint.setVisible(True)
