"""Copying one layer's setting between configurations: the undoable command and the compare
view's "from … to … Copy" row."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtGui import QUndoCommand
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

from quantviz.session import Session, copy_layer

__all__ = ["CopyBar", "CopyLayerCommand"]


class CopyLayerCommand(QUndoCommand):
    """Copy layer ``fqn``'s setting from configuration ``source`` to ``target`` (undoable;
    neither becomes current)."""

    def __init__(self, session: Session, fqn: str, source: str, target: str) -> None:
        super().__init__(f"copy {fqn} from {source} to {target}")
        for n in (source, target):
            if n not in session.configs:
                raise ValueError(f"config name: no configuration named {n!r}")
        if fqn not in session.fqns:
            raise ValueError(f"layer: no quantizable layer named {fqn!r}")
        self.session = session
        self.target = target
        self.before = session.configs[target]
        self.after = copy_layer(session.configs[source], self.before, [fqn])

    def _set(self, cfg: Any) -> None:
        if self.target not in self.session.configs:  # deleted since: nothing to restore
            self.setObsolete(True)
            return
        self.session.replace_config(self.target, cfg)

    def redo(self) -> None:
        self._set(self.after)

    def undo(self) -> None:
        self._set(self.before)


class CopyBar(QWidget):
    """``from [source] to [target] [Copy fqn from source to target]``; ``requested(source,
    target)`` when the button is clicked. The view says which layer and whether the copy
    would change anything (:meth:`set_layer`)."""

    requested = Signal(str, str)
    #: the source or target combo changed
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sourceCombo = QComboBox(self)
        self.sourceCombo.setObjectName("copySourceCombo")
        self.targetCombo = QComboBox(self)
        self.targetCombo.setObjectName("copyTargetCombo")
        self.copyButton = QPushButton("Copy", self)
        self.copyButton.setObjectName("copyLayerButton")
        self.copyButton.setToolTip("Undoable (Ctrl+Z)")
        self.copyButton.clicked.connect(
            lambda *_: self.requested.emit(self.source(), self.target())
        )
        self.sourceCombo.currentIndexChanged.connect(lambda *_: self.changed.emit())
        self.targetCombo.currentIndexChanged.connect(lambda *_: self.changed.emit())
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("from", self))
        # the combos keep room for their names ("default qat-ste" read "default qa"): the
        # button says only which layer, the combos say from and to (its tooltip says all)
        for combo in (self.sourceCombo, self.targetCombo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        lay.addWidget(self.sourceCombo, 1)
        lay.addWidget(QLabel("to", self))
        lay.addWidget(self.targetCombo, 1)
        lay.addWidget(self.copyButton)

    def source(self) -> str:
        return self.sourceCombo.currentText()

    def target(self) -> str:
        return self.targetCombo.currentText()

    def set_names(self, names: list[str]) -> None:
        """Offer ``names`` (keeping the choices that remain; source and target differ)."""
        for combo, default in ((self.sourceCombo, 0), (self.targetCombo, 1)):
            keep = combo.currentText()
            with QSignalBlocker(combo):
                combo.clear()
                combo.addItems(names)
                if keep in names:
                    combo.setCurrentText(keep)
                elif len(names) > default:
                    combo.setCurrentIndex(default)
        if len(names) > 1 and self.source() == self.target():
            with QSignalBlocker(self.targetCombo):
                self.targetCombo.setCurrentIndex((self.sourceCombo.currentIndex() + 1) % len(names))

    def set_layer(self, fqn: str | None, can_copy: bool) -> None:
        a, b = self.source(), self.target()
        self.copyButton.setText(f"Copy {fqn}" if fqn and a and b else "Copy")
        self.copyButton.setEnabled(can_copy)
        if fqn and a and b and not can_copy:
            self.copyButton.setToolTip(f"{fqn} is already the same in {a} and {b}")
        elif fqn and a and b:
            self.copyButton.setToolTip(f"Copy {fqn} from {a} to {b} (undoable: Ctrl+Z)")
        else:
            self.copyButton.setToolTip("Undoable (Ctrl+Z)")
