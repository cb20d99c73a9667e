"""Named configurations: save current as, rename, duplicate, delete, make current."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from quantviz.core.units import human_bytes
from quantviz.session import Session

__all__ = ["ConfigList"]


class ConfigList(QWidget):
    """``configList`` mirrors ``session.configs``; the buttons call session methods.

    The dialog-free methods (:meth:`save_as`, :meth:`rename`, ...) are what the buttons call
    after asking for a name; errors propagate to the caller's guard.
    """

    errorRaised = Signal(str, object)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.list = QListWidget(self)
        self.list.setObjectName("configList")
        self.list.setToolTip("Named configurations; double-click to make one current")
        self.list.itemDoubleClicked.connect(
            lambda it: self._try(self.make_current, it.data(Qt.ItemDataRole.UserRole))
        )
        self.buttons: dict[str, QPushButton] = {}
        row1, row2 = QHBoxLayout(), QHBoxLayout()
        for key, text, tip, row in (
            ("saveAs", "Save as…", "Snapshot the current configuration under a new name", row1),
            ("rename", "Rename…", "Rename the selected configuration", row1),
            ("duplicate", "Duplicate", "Copy the selected configuration", row1),
            ("delete", "Delete", "Delete the selected configuration", row2),
            ("makeCurrent", "Make current", "Edit and evaluate the selected configuration", row2),
        ):
            b = QPushButton(text, self)
            b.setObjectName(f"{key}Button")
            b.setToolTip(tip)
            row.addWidget(b)
            self.buttons[key] = b
        row2.addStretch(1)
        self.buttons["saveAs"].clicked.connect(self._ask_save_as)
        self.buttons["rename"].clicked.connect(self._ask_rename)
        self.buttons["duplicate"].clicked.connect(
            lambda: self._try(self.duplicate, self.selected_name())
        )
        self.buttons["delete"].clicked.connect(lambda: self._try(self.delete, self.selected_name()))
        self.buttons["makeCurrent"].clicked.connect(
            lambda: self._try(self.make_current, self.selected_name())
        )
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.list)
        lay.addLayout(row1)
        lay.addLayout(row2)
        for sig in (
            session.configs_changed,
            session.current_name_changed,
            session.results_changed,
            session.model_changed,
            session.config_changed,  # a result of an earlier version is marked as such
        ):
            sig.connect(self.refresh)
        self.refresh()

    # -- session -> widget -------------------------------------------------------------------
    def refresh(self, *_: Any) -> None:
        keep = self.selected_name()
        with QSignalBlocker(self.list):
            self.list.clear()
            for name in self.session.config_names:
                res = self.session.results_for(name)
                text = name
                tip = ""
                if res:
                    r = res[-1].result
                    text += f"   — {r.metric} {r.value:.4f}, {human_bytes(r.model_bytes)}"
                    if res[-1].config != self.session.configs[name]:
                        text += " (before the last edits; F5)"
                        tip = (
                            f"{name} was edited after this result was measured: press F5 to "
                            "evaluate it as it is now"
                        )
                it = QListWidgetItem(text)
                it.setData(Qt.ItemDataRole.UserRole, name)
                tips = []
                if name == self.session.current_name:
                    f = QFont()
                    f.setBold(True)
                    it.setFont(f)
                    it.setText("▸ " + text)
                    tips.append("the current configuration")
                if name in self.session.tuned:
                    tips.append(
                        "with fine-tuned (QAT) weights: evaluated, shown, exported and saved "
                        "with them"
                    )
                if tip:
                    tips.append(tip)
                if tips:
                    it.setToolTip("; ".join(tips))
                self.list.addItem(it)
                if name == (keep or self.session.current_name):
                    self.list.setCurrentItem(it)

    def selected_name(self) -> str:
        it = self.list.currentItem()
        return self.session.current_name if it is None else it.data(Qt.ItemDataRole.UserRole)

    def names(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    # -- actions (no dialogs) -----------------------------------------------------------------
    def save_as(self, name: str) -> None:
        self.session.save_as(name)

    def rename(self, old: str, new: str) -> None:
        self.session.rename(old, new)

    def duplicate(self, name: str) -> str:
        return self.session.duplicate(name)

    def delete(self, name: str) -> None:
        self.session.delete(name)

    def make_current(self, name: str) -> None:
        self.session.make_current(name)

    # -- dialogs -------------------------------------------------------------------------
    def _try(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except ValueError as exc:
            self.errorRaised.emit("Configuration", exc)

    def _ask_save_as(self) -> None:
        name, ok = QInputDialog.getText(
            self,
            "Save configuration as",
            "Name:",
            text=self.session.unique_name(f"{self.session.current_name} (copy)"),
        )
        if ok:
            self._try(self.save_as, name)

    def _ask_rename(self) -> None:
        old = self.selected_name()
        name, ok = QInputDialog.getText(self, "Rename configuration", "New name:", text=old)
        if ok and name != old:
            self._try(self.rename, old, name)
