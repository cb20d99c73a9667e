"""Grouped editing: the pattern overrides of the current configuration, editable.

Type a layer name, a glob (``*.mlp.*``, ``layers.*.self_attn.v_proj``) or ``re:<regex>``
(``re:layers\\.\\d+\\.self_attn\\.v_proj``, a whole-name match, as config files spell it); the
editor says how many layers match; **Set** gives them the scheme of the row below in one
undoable step. The list shows the configuration's overrides in the order they apply (the
last match wins: a layer two patterns match takes the lower one's scheme), reorderable by
drag or the up / down buttons, deletable; every change is one undoable step.

Widgets never own state: every edit builds a new configuration with the pure edits of
:mod:`quantviz.session.edits` and hands it to ``push`` (the main window's undo stack).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from quantviz.app import AppController
from quantviz.core.spec import FIXED_WIDTH, QUANTIZERS, ModelConfig, QuantSpec
from quantviz.session import (
    layers_matching,
    move_override,
    override_info,
    remove_override,
    set_pattern_spec,
)

__all__ = ["OverrideEditor"]

_GRANS = (("per tensor", "per_tensor"), ("per channel", "per_channel"), ("per group", "per_group"))
_SIDE_BASE = {"weight": QuantSpec(granularity="per_channel"), "activation": QuantSpec()}
_ERROR_STYLE = "color: #d0342c;"

Push = Callable[[ModelConfig, str], None]


class OverrideEditor(QWidget):
    """Pattern field + match count + scheme + **Set**, and the ``overrideList`` of the
    current configuration with up / down / delete (see the module docstring)."""

    def __init__(self, controller: AppController, push: Push, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.session = session = controller.session
        self.push = push

        self.pattern = QLineEdit(self)
        self.pattern.setObjectName("overridePattern")
        self.pattern.setPlaceholderText(r"*.mlp.*  or  re:layers\.\d+\.self_attn\.v_proj")
        self.pattern.setToolTip(
            "A layer name, a glob (* ? [..]) or re:<regular expression> matched against the "
            "whole layer name, as in config files"
        )
        self.pattern.setClearButtonEnabled(True)
        self.matchLabel = QLabel(self)
        self.matchLabel.setObjectName("overrideMatchLabel")
        self.matchLabel.setWordWrap(True)
        self.selectButton = QToolButton(self)
        self.selectButton.setObjectName("overrideSelectButton")
        self.selectButton.setText("Select")
        self.selectButton.setToolTip("Select the matching layers in the layer table")

        self.sideCombo = QComboBox(self)
        self.sideCombo.setObjectName("overrideSideCombo")
        self.sideCombo.addItem("Weight", "weight")
        self.sideCombo.addItem("Activation", "activation")
        self.quantizerCombo = QComboBox(self)
        self.quantizerCombo.setObjectName("overrideQuantizerCombo")
        self.quantizerCombo.addItem("float", None)
        for q in QUANTIZERS:
            self.quantizerCombo.addItem(q, q)
        self.quantizerCombo.setCurrentIndex(1)
        self.bitsSpin = QSpinBox(self)
        self.bitsSpin.setObjectName("overrideBitsSpin")
        self.bitsSpin.setRange(1, 16)
        self.bitsSpin.setValue(4)
        self.bitsSpin.setSuffix(" bits")
        self.granCombo = QComboBox(self)
        self.granCombo.setObjectName("overrideGranularityCombo")
        for label, g in _GRANS:
            self.granCombo.addItem(label, g)
        self.granCombo.setCurrentIndex(1)
        self.groupSpin = QSpinBox(self)
        self.groupSpin.setObjectName("overrideGroupSpin")
        self.groupSpin.setRange(1, 1 << 16)
        self.groupSpin.setValue(128)
        self.groupSpin.setPrefix("g")
        self.setButton = QPushButton("Set", self)
        self.setButton.setObjectName("overrideSetButton")
        self.setButton.setToolTip(
            "Give every matching layer this scheme (one undoable step); the pattern becomes "
            "the last override, so it wins"
        )

        self.title = QLabel("Overrides — applied top to bottom: the last match wins", self)
        self.title.setObjectName("overrideTitle")
        self.list = QListWidget(self)
        self.list.setObjectName("overrideList")
        self.list.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.list.setDefaultDropAction(Qt.DropAction.MoveAction)
        # the list takes the room left under the form: its 192 px size hint made the editor
        # scroll inside a 240 px area, the rows out of view
        self.list.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.list.setToolTip(
            "The current configuration's overrides in the order they apply; drag to reorder "
            "(a layer that two patterns match takes the lower one's scheme)"
        )
        self.upButton = QToolButton(self)
        self.upButton.setObjectName("overrideUpButton")
        self.upButton.setText("Up")
        self.upButton.setToolTip("Apply earlier (loses to the overrides below it; Ctrl+Up)")
        self.downButton = QToolButton(self)
        self.downButton.setObjectName("overrideDownButton")
        self.downButton.setText("Down")
        self.downButton.setToolTip("Apply later (wins over the overrides above it; Ctrl+Down)")
        self.deleteButton = QToolButton(self)
        self.deleteButton.setObjectName("overrideDeleteButton")
        self.deleteButton.setText("Delete")
        self.deleteButton.setToolTip(
            "Remove this override (its layers follow what is left; Delete)"
        )

        row1 = QHBoxLayout()
        row1.addWidget(QLabel("Pattern", self))
        row1.addWidget(self.pattern, 1)
        row1.addWidget(self.selectButton)
        row2 = QHBoxLayout()
        for w in (self.sideCombo, self.quantizerCombo, self.bitsSpin):
            row2.addWidget(w)
        row2.addStretch(1)
        row2b = QHBoxLayout()
        row2b.addWidget(self.granCombo)
        row2b.addWidget(self.groupSpin)
        row2b.addStretch(1)
        row2b.addWidget(self.setButton)
        self.title.setWordWrap(True)
        row3 = QHBoxLayout()
        row3.addWidget(self.title, 1)
        for b in (self.upButton, self.downButton, self.deleteButton):
            row3.addWidget(b)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 0)
        lay.setSpacing(3)
        lay.addLayout(row1)
        lay.addWidget(self.matchLabel)
        lay.addLayout(row2)
        lay.addLayout(row2b)
        lay.addLayout(row3)
        lay.addWidget(self.list, 1)

        self.pattern.textChanged.connect(self._update_matches)
        self.pattern.returnPressed.connect(self.apply)
        self.setButton.clicked.connect(self.apply)
        self.selectButton.clicked.connect(self.select_matching)
        self.quantizerCombo.currentIndexChanged.connect(self._update_enabled)
        self.granCombo.currentIndexChanged.connect(self._update_enabled)
        self.list.currentItemChanged.connect(self._on_current_item)
        # a drop is a move of the list model's rows (or a remove + insert): read the new order
        # once the drop is over
        lm = self.list.model()
        for sig in (lm.rowsMoved, lm.rowsInserted, lm.rowsRemoved):
            sig.connect(lambda *_: QTimer.singleShot(0, self._on_dropped))
        self.upButton.clicked.connect(lambda: self.move_current(-1))
        self.downButton.clicked.connect(lambda: self.move_current(+1))
        self.deleteButton.clicked.connect(self.delete_current)
        for keys, slot in (
            (QKeySequence.StandardKey.Delete, self.delete_current),
            (QKeySequence("Ctrl+Up"), lambda: self.move_current(-1)),
            (QKeySequence("Ctrl+Down"), lambda: self.move_current(+1)),
        ):
            sc = QShortcut(keys, self.list)
            sc.setContext(Qt.ShortcutContext.WidgetShortcut)
            sc.activated.connect(slot)
        session.config_changed.connect(self.refresh)
        session.current_name_changed.connect(self.refresh)
        session.model_changed.connect(self.refresh)
        self._update_enabled()
        self.refresh()

    # -- the pattern -------------------------------------------------------------------------
    def matching(self) -> list[str]:
        """The layers the typed pattern matches (``ValueError`` for a bad pattern)."""
        return layers_matching(self.pattern.text().strip(), self.session.fqns)

    def _update_matches(self, *_: Any) -> None:
        text = self.pattern.text().strip()
        ok = False
        if not text:
            msg = "Type a layer name, a glob or re:<regex>"
        else:
            try:
                n = len(self.matching())
            except ValueError as e:
                msg = str(e)
            else:
                ok = n > 0
                msg = f"{n} layer{'s' if n != 1 else ''} match" if n else self._no_match(text)
        self.matchLabel.setText(msg)
        self.matchLabel.setStyleSheet("" if ok or not text else _ERROR_STYLE)
        self.setButton.setEnabled(ok)
        self.selectButton.setEnabled(ok)

    def _no_match(self, text: str) -> str:
        """The no-match message, naming the key that would match if only the prefix is missing
        (``re:layers\\.1\\..*`` is a whole-name match: tiny_lm's are ``model.layers.1...``)."""
        regex = text.startswith("re:")
        body = text[3:] if regex else text
        hint = f"re:.*{body}" if regex else f"*{body}"
        if body.startswith(".*" if regex else "*"):
            return "no layer matches"
        try:
            k = len(layers_matching(hint, self.session.fqns))
        except ValueError:
            k = 0
        if not k:
            return "no layer matches"
        return f"no layer matches the whole name; {hint} matches {k}"

    def spec(self) -> QuantSpec | None:
        """The scheme the widgets describe (None = float); ``ValueError`` when invalid."""
        q = self.quantizerCombo.currentData()
        if q is None:
            return None
        side = self.sideCombo.currentData()
        base = getattr(self.session.config.default, side) or _SIDE_BASE[side]
        return base.with_(
            quantizer=q,
            bits=self.bitsSpin.value(),
            granularity=self.granCombo.currentData(),
            group_size=self.groupSpin.value(),
        )

    def _update_enabled(self, *_: Any) -> None:
        q = self.quantizerCombo.currentData()
        self.bitsSpin.setEnabled(q is not None and q not in FIXED_WIDTH)
        self.granCombo.setEnabled(q is not None)
        self.groupSpin.setEnabled(q is not None and self.granCombo.currentData() == "per_group")

    def apply(self) -> None:
        """Set the scheme for every layer the pattern matches: one undoable step."""
        pattern = self.pattern.text().strip()
        side = self.sideCombo.currentData()
        try:
            n = len(self.matching())
            if not n:
                raise ValueError(f"pattern: {pattern!r} matches no layer of this model")
            spec = self.spec()
            cfg = set_pattern_spec(self.session.config, pattern, side, spec)
        except ValueError as e:
            self.matchLabel.setText(str(e))
            self.matchLabel.setStyleSheet(_ERROR_STYLE)
            return
        what = "float" if spec is None else spec.short()
        self.push(cfg, f"{pattern} ({n} layers): {side} {what}")
        self._select_key(pattern)

    def select_matching(self) -> None:
        try:
            fqns = self.matching()
        except ValueError:
            return
        if fqns:
            self.session.select(fqns)

    # -- the list -----------------------------------------------------------------------------
    def keys(self) -> list[str]:
        """The override keys as the list shows them (the order they apply)."""
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def refresh(self, *_: Any) -> None:
        cfg = self.session.config
        cur = self.list.currentItem()
        keep = cur.data(Qt.ItemDataRole.UserRole) if cur is not None else None
        infos = override_info(cfg, self.session.fqns)
        with QSignalBlocker(self.list):  # (not its model: the view must see the rows)
            self.list.clear()
            for n, info in enumerate(infos, 1):
                text = f"{n}. {info.key}  →  {info.config.short()}   ({info.matched} layers"
                if info.decided < info.matched:
                    text += f", {info.matched - info.decided} taken by a later override"
                text += ")"
                item = QListWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, info.key)
                item.setToolTip(
                    f"{info.key}: {info.config.short()}\n{info.matched} layers match it; "
                    f"{info.decided} take this scheme (a later override that also matches a "
                    "layer wins there)"
                )
                self.list.addItem(item)
                if info.key == keep:
                    self.list.setCurrentItem(item)
        self.list.setMinimumHeight(2 * self.list.fontMetrics().height() + 8)  # two rows
        self._update_buttons()
        self._update_matches()

    def _select_key(self, key: str) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == key:
                self.list.setCurrentRow(i)
                return

    def _update_buttons(self) -> None:
        row = self.list.currentRow()
        self.upButton.setEnabled(row > 0)
        self.downButton.setEnabled(0 <= row < self.list.count() - 1)
        self.deleteButton.setEnabled(row >= 0)

    def _on_current_item(self, item: QListWidgetItem | None, *_: Any) -> None:
        """Show the chosen override in the fields (its pattern and scheme)."""
        self._update_buttons()
        if item is None:
            return
        key = item.data(Qt.ItemDataRole.UserRole)
        lc = self.session.config.override_dict.get(key)
        if lc is None:
            return
        self.pattern.setText(key)
        side = self.sideCombo.currentData()
        spec = getattr(lc, side)
        if spec is None:
            self.quantizerCombo.setCurrentIndex(0)
            return
        self.quantizerCombo.setCurrentIndex(self.quantizerCombo.findData(spec.quantizer))
        self.bitsSpin.setValue(spec.bits)
        self.granCombo.setCurrentIndex(self.granCombo.findData(spec.granularity))
        self.groupSpin.setValue(spec.group_size)

    def move_current(self, step: int) -> None:
        """Move the chosen override ``step`` places (negative: earlier): one undoable step."""
        row = self.list.currentRow()
        if row < 0 or not 0 <= row + step < self.list.count():
            return
        key = self.keys()[row]
        self.push(
            move_override(self.session.config, key, row + step),
            f"override {key}: {'up' if step < 0 else 'down'}",
        )
        self._select_key(key)

    def delete_current(self) -> None:
        row = self.list.currentRow()
        if row < 0:
            return
        key = self.keys()[row]
        self.push(remove_override(self.session.config, key), f"remove override {key}")

    def _on_dropped(self) -> None:
        """After a drag: the list's new order becomes the configuration's (one step)."""
        keys = self.keys()
        cfg = self.session.config
        have = [k for k, _ in cfg.overrides]
        if keys == have:
            return
        if sorted(keys) != sorted(have):  # not a reorder (a drop outside, a half refresh)
            self.refresh()
            return
        cur = self.list.currentItem()
        moved = cur.data(Qt.ItemDataRole.UserRole) if cur is not None else None
        new = cfg
        for i, k in enumerate(keys):
            new = move_override(new, k, i)
        self.push(new, f"reorder overrides{f' ({moved})' if moved else ''}")
        if moved is not None:
            self._select_key(moved)
