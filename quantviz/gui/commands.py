"""Undoable edits of a named configuration (``QUndoStack`` commands)."""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand

from quantviz.core.spec import ModelConfig
from quantviz.session import Session

__all__ = ["SetConfigCommand"]


class SetConfigCommand(QUndoCommand):
    """Replace configuration ``name`` by ``after``; undo restores ``before`` (and makes the
    configuration current again, so the user sees what was undone)."""

    def __init__(
        self, session: Session, name: str, before: ModelConfig, after: ModelConfig, text: str
    ) -> None:
        super().__init__(text)
        self.session = session
        self.name = name
        self.before = before
        self.after = after

    def _set(self, cfg: ModelConfig) -> None:
        if self.name not in self.session.configs:  # deleted since: nothing to restore
            self.setObsolete(True)
            return
        self.session.set_config(cfg, self.name)

    def redo(self) -> None:
        self._set(self.after)

    def undo(self) -> None:
        self._set(self.before)
