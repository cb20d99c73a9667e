"""File > Open data…: type or pick the evaluation data source.

A file dialog only takes existing files, so a bundled source (``sample:digits``,
``sample:tiny_lm``) could not be typed. This dialog takes either: an editable box pre-filled
with the open model's current data source (empty without one), the bundled sources that fit
the model in its list, and Browse… for a file (``.npz`` / ``.pt``; ``.txt`` too for a
language model). What is typed is opened as is; a wrong name or path is reported by the
loader, naming it, and the current data stays.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["DataSourceDialog", "bundled_sources", "data_file_filter"]


def bundled_sources(handle: Any) -> list[str]:
    """The bundled data sources that fit ``handle`` (token data for a causal LM)."""
    from quantviz.data.datasets import BUNDLED, SAMPLE_PREFIX
    from quantviz.data.tokens import BUNDLED_TOKENS

    names = BUNDLED_TOKENS if getattr(handle, "is_causal_lm", False) else BUNDLED
    return [f"{SAMPLE_PREFIX}{n}" for n in names]


def data_file_filter(handle: Any) -> str:
    """The Browse… dialog's file filter for ``handle``'s data."""
    from quantviz.data.tokens import TEXT_SUFFIXES

    if getattr(handle, "is_causal_lm", False):
        text = " ".join(f"*{s}" for s in TEXT_SUFFIXES)
        return f"Token data (*.npz *.pt {text});;All files (*)"
    return "Data (*.npz *.pt);;All files (*)"


class DataSourceDialog(QDialog):
    """``dataSourceDialog``: ``sourceBox`` (editable), ``browseButton``, OK / Cancel.
    :meth:`source` is the typed or picked source, stripped."""

    def __init__(
        self, handle: Any, current: str | None, start_dir: str = "", parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("dataSourceDialog")
        self.setWindowTitle("Open evaluation data")
        self.handle = handle
        self.start_dir = start_dir
        lay = QVBoxLayout(self)
        bundled = bundled_sources(handle)
        hint = QLabel(
            "Type a data file's path or a bundled source ("
            + ", ".join(bundled)
            + "), or Browse… for a file."
        )
        hint.setWordWrap(True)
        lay.addWidget(hint)
        row = QHBoxLayout()
        self.sourceBox = QComboBox(self)
        self.sourceBox.setObjectName("sourceBox")
        self.sourceBox.setEditable(True)
        self.sourceBox.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.sourceBox.setMinimumContentsLength(40)
        self.sourceBox.addItems(bundled)
        self.sourceBox.setEditText(current or "")
        self.sourceBox.lineEdit().setPlaceholderText(bundled[0] if bundled else "data.npz")
        self.sourceBox.lineEdit().selectAll()
        self.sourceBox.setToolTip(data_file_filter(handle).split(";;")[0])
        row.addWidget(self.sourceBox, 1)
        self.browseButton = QPushButton("Browse…", self)
        self.browseButton.setObjectName("browseButton")
        self.browseButton.setAutoDefault(False)
        self.browseButton.clicked.connect(self.browse)
        row.addWidget(self.browseButton)
        lay.addLayout(row)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        self.openButton = self.buttons.button(QDialogButtonBox.StandardButton.Open)
        self.openButton.setObjectName("openDataButton")
        self.sourceBox.editTextChanged.connect(self._update_ok)
        self._update_ok()
        self.sourceBox.setFocus()

    def source(self) -> str:
        return self.sourceBox.currentText().strip()

    def _update_ok(self, *_: Any) -> None:
        self.openButton.setEnabled(bool(self.source()))

    def browse(self) -> None:
        """Pick a file (starting in the last folder); its path replaces the typed text."""
        path, _ = QFileDialog.getOpenFileName(
            self, "Open evaluation data", self.start_dir, data_file_filter(self.handle)
        )
        if path:
            self.sourceBox.setEditText(path)

    def accept(self) -> None:
        if self.source():
            super().accept()
