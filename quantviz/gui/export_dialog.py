"""File > Export…: write one named configuration for a deployment tool (``exportDialog``).

The dialog picks the configuration, the format, the output file and the strict option, then
runs :func:`quantviz.io.exporters.export` in a :class:`~quantviz.gui.workers.Runner` (an ONNX
export traces the model) with a busy indicator. It lists what was written and, by name, the
layers the format cannot express; errors go to the app's :class:`ErrorReporter`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from quantviz.gui.errors import ErrorReporter
from quantviz.gui.workers import Runner
from quantviz.session import Session

__all__ = ["FORMAT_LABELS", "ExportDialog", "png_bytes"]

#: format key -> (label, what is written)
FORMAT_LABELS: dict[str, tuple[str, str]] = {
    "json": ("quantviz JSON", "The configuration file (JSON), loadable by quantviz."),
    "yaml": ("quantviz YAML", "The configuration file (YAML), same content as JSON."),
    "safetensors": (
        "safetensors (quantized weights)",
        "Integer codes (packed below 8 bits), scales, zero points and codebooks per layer, "
        "with a JSON manifest in the file's own metadata (one file).",
    ),
    "onnx": (
        "ONNX (QuantizeLinear / DequantizeLinear)",
        "The model with Q/DQ pairs on uniform weights and activations; other quantizers as "
        "their dequantized constants.",
    ),
    "aimet": (
        "AIMET encodings (0.6.1)",
        "activation_encodings and param_encodings JSON for Qualcomm's toolchain.",
    ),
    "html": (
        "HTML report",
        "One self-contained page: trade-off plot, per-layer table, the configuration and the "
        "plots as PNG.",
    ),
}


def png_bytes(widget: QWidget) -> bytes:
    """``widget`` rendered (``grab()``) as PNG file bytes."""
    buf = QByteArray()
    dev = QBuffer(buf)
    dev.open(QIODevice.OpenModeFlag.WriteOnly)
    widget.grab().save(dev, "PNG")
    dev.close()
    return bytes(buf.data())


class ExportDialog(QDialog):
    """``exportDialog``. Signals: ``exported(ExportResult)``, ``exportFailed(str)``.

    ``images`` returns the PNGs for the HTML report (name -> bytes, grabbed on the GUI
    thread); ``wait_before`` runs first in the worker thread (waits for a running evaluation,
    which has the model's weights swapped out); ``model_lock`` (the controller's
    ``model_lock``) is held while the export reads the model, so no other background job
    (e.g. a fine-tuned configuration's calibration) swaps its weights meanwhile.
    """

    exported = Signal(object)
    exportFailed = Signal(str)

    def __init__(
        self,
        session: Session,
        errors: ErrorReporter,
        parent: QWidget | None = None,
        *,
        images: Callable[[], dict[str, bytes]] | None = None,
        wait_before: Callable[[], object] | None = None,
        model_lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        super().__init__(parent)
        from quantviz.io.exporters import SUFFIXES

        self.setObjectName("exportDialog")
        self.setWindowTitle("Export configuration")
        self.setModal(False)
        self.session = session
        self.errors = errors
        self.images = images or (lambda: {})
        self.wait_before = wait_before or (lambda: None)
        self.model_lock = model_lock
        self.suffixes = SUFFIXES
        self.last_result: Any = None
        self.runner = Runner("exportRunner", self)
        self.runner.finished.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)
        self.runner.idle.connect(lambda: self._busy(False))

        self.configCombo = QComboBox(self)
        self.configCombo.setObjectName("exportConfigCombo")
        self.formatCombo = QComboBox(self)
        self.formatCombo.setObjectName("exportFormatCombo")
        for key, (label, _) in FORMAT_LABELS.items():
            self.formatCombo.addItem(label, key)
        self.formatHelp = QLabel(self)
        self.formatHelp.setObjectName("exportFormatHelp")
        self.formatHelp.setWordWrap(True)
        self.pathEdit = QLineEdit(self)
        self.pathEdit.setObjectName("exportPathEdit")
        self.pathEdit.setPlaceholderText("output file")
        #: True once the user typed or browsed a path: from then on it is never renamed
        self.user_path = False
        self.pathEdit.textEdited.connect(self._on_path_edited)
        self.suffixHint = QLabel(self)
        self.suffixHint.setObjectName("exportSuffixHint")
        self.suffixHint.setWordWrap(True)
        self.suffixHint.setVisible(False)
        self.browseButton = QPushButton("Browse…", self)
        self.browseButton.setObjectName("exportBrowseButton")
        self.browseButton.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.pathEdit, 1)
        path_row.addWidget(self.browseButton)
        self.strictCheck = QCheckBox(
            "Strict: refuse when a layer's scheme cannot be expressed", self
        )
        self.strictCheck.setObjectName("exportStrictCheck")
        form = QFormLayout()
        form.addRow("Configuration", self.configCombo)
        form.addRow("Format", self.formatCombo)
        form.addRow("", self.formatHelp)
        form.addRow("Output file", path_row)
        form.addRow("", self.suffixHint)
        form.addRow("", self.strictCheck)

        self.busyBar = QProgressBar(self)
        self.busyBar.setObjectName("exportBusy")
        self.busyBar.setRange(0, 0)  # indeterminate
        self.busyBar.setTextVisible(False)
        self.busyBar.setVisible(False)
        self.resultLabel = QLabel(self)
        self.resultLabel.setObjectName("exportResultLabel")
        self.resultLabel.setWordWrap(True)
        self.resultLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.unsupportedLabel = QLabel(self)
        self.unsupportedLabel.setObjectName("exportUnsupportedLabel")
        self.unsupportedList = QListWidget(self)
        self.unsupportedList.setObjectName("exportUnsupportedList")
        self.unsupportedList.setVisible(False)
        self.unsupportedList.setMaximumHeight(140)

        buttons = QDialogButtonBox(self)
        self.exportButton = buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.exportButton.setObjectName("exportButton")
        self.exportButton.setDefault(True)
        close = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        close.clicked.connect(self.close)
        self.exportButton.clicked.connect(self.start_export)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.busyBar)
        lay.addWidget(self.resultLabel)
        lay.addWidget(self.unsupportedLabel)
        lay.addWidget(self.unsupportedList)
        lay.addStretch(1)
        lay.addWidget(buttons)
        self.resize(620, 420)

        self.formatCombo.currentIndexChanged.connect(self._on_format)
        self.configCombo.currentIndexChanged.connect(self._on_config)
        self.sync()

    # -- state -----------------------------------------------------------------------------
    def sync(self) -> None:
        """Refill the configuration list (current one selected) and the suggested path."""
        s = self.session
        self.configCombo.blockSignals(True)
        self.configCombo.clear()
        self.configCombo.addItems(s.config_names)
        self.configCombo.setCurrentText(s.current_name)
        self.configCombo.blockSignals(False)
        self._on_format()

    def fmt(self) -> str:
        return str(self.formatCombo.currentData())

    def set_format(self, fmt: str) -> None:
        i = self.formatCombo.findData(fmt)
        if i < 0:
            raise ValueError(f"format: must be one of {', '.join(FORMAT_LABELS)}, got {fmt!r}")
        self.formatCombo.setCurrentIndex(i)

    def _on_path_edited(self, *_: Any) -> None:
        self.user_path = True
        self._check_suffix()

    def _on_format(self, *_: Any) -> None:
        fmt = self.fmt()
        self.formatHelp.setText(FORMAT_LABELS[fmt][1])
        self.strictCheck.setEnabled(fmt in ("safetensors", "onnx", "aimet"))
        prev = getattr(self, "_prev_fmt", None)
        text = self.pathEdit.text().strip()
        if (
            not self.user_path
            and prev
            and text
            and Path(text).suffix.lower() in self.suffixes[prev]
        ):
            # a name we made: follow the new format
            self.pathEdit.setText(str(Path(text).with_suffix(self.suffixes[fmt][0])))
        self._prev_fmt = fmt
        self._fix_suffix()

    def _on_config(self, *_: Any) -> None:
        text = self.pathEdit.text().strip()
        if not text or self.user_path:  # what the user typed is theirs
            self._fix_suffix()
            return
        p = Path(text)
        self.pathEdit.setText(str(p.with_name(_safe(self.configCombo.currentText()) + p.suffix)))

    def _fix_suffix(self) -> None:
        """Name the file when the user has not: ``~/<config>.<format suffix>``. A path the
        user typed is never renamed; a suffix that does not fit the format is pointed out
        (and Export refuses it with a message) instead."""
        ok = self.suffixes[self.fmt()]
        text = self.pathEdit.text().strip()
        if not text:
            base = Path.home() / _safe(self.configCombo.currentText() or "config")
            self.pathEdit.setText(str(base) + ok[0])
            self.user_path = False
        elif not self.user_path and Path(text).suffix.lower() not in ok:
            self.pathEdit.setText(str(Path(text).with_suffix(ok[0])))
        self._check_suffix()

    def _check_suffix(self) -> None:
        ok = self.suffixes[self.fmt()]
        suffix = Path(self.pathEdit.text().strip()).suffix.lower()
        bad = bool(self.pathEdit.text().strip()) and suffix not in ok
        self.suffixHint.setText(
            f"A {FORMAT_LABELS[self.fmt()][0]} file ends in {' or '.join(ok)}; "
            f"{suffix or 'no suffix'} will be refused. Change the name or the format."
            if bad
            else ""
        )
        self.suffixHint.setVisible(bad)

    def _browse(self) -> None:
        fmt = self.fmt()
        pattern = " ".join(f"*{s}" for s in self.suffixes[fmt])
        path, _ = QFileDialog.getSaveFileName(
            self, "Export to", self.pathEdit.text(), f"{FORMAT_LABELS[fmt][0]} ({pattern})"
        )
        if path:
            self.pathEdit.setText(path)
            self.user_path = True
            self._check_suffix()

    def _busy(self, on: bool) -> None:
        self.busyBar.setVisible(on)
        self.exportButton.setEnabled(not on)

    # -- export ----------------------------------------------------------------------------
    def start_export(self) -> None:
        """Export in the background; ``exported`` or ``exportFailed`` follows."""
        try:
            job, label = self._make_job()
        except ValueError as exc:
            self.errors.report("Could not export", exc)
            self.exportFailed.emit(str(exc))
            return
        self.resultLabel.setText(f"<i>{label}…</i>")
        self.unsupportedLabel.setText("")
        self.unsupportedList.clear()
        self.unsupportedList.setVisible(False)
        self._busy(True)
        self.runner.start(label, job)

    def _make_job(self) -> tuple[Callable[[], Any], str]:
        s = self.session
        if s.handle is None:
            raise ValueError("open a model before exporting")
        name = self.configCombo.currentText()
        if name not in s.configs:
            raise ValueError(f"config name: no configuration named {name!r}")
        text = self.pathEdit.text().strip()
        if not text:
            raise ValueError("output file: choose where to write the export")
        path = Path(text).expanduser()
        fmt, strict = self.fmt(), self.strictCheck.isChecked() and self.strictCheck.isEnabled()
        handle, config = s.handle, s.configs[name]
        stats = dict(s.activation_stats)
        results: list[Any] = []
        images: dict[str, bytes] = {}
        if fmt == "html":
            mine = [e for e in s.results_for(name) if e.config == config]
            if mine:  # the report's first result is the chosen configuration's
                others = [e for e in s.results if e not in mine]
                results = [replace(e.result, name=e.name) for e in (mine[-1], *others)]
            images = self.images()
        wait, lock = self.wait_before, self.model_lock
        tuned = s.tuned.get(name)  # fine-tuned (QAT) weights of this configuration

        def job() -> Any:
            from contextlib import nullcontext

            from quantviz.eval.qat import swapped_weights
            from quantviz.io.exporters import export

            wait()
            yield 0.0
            with (
                lock if lock is not None else nullcontext(),
                swapped_weights(handle, tuned) if tuned else nullcontext(),
            ):
                return export(
                    handle,
                    config,
                    fmt,
                    path,
                    stats=stats,
                    results=results,
                    images=images,
                    strict=strict,
                )

        return job, f"Exporting {name} as {FORMAT_LABELS[fmt][0]}"

    def _on_done(self, result: Any) -> None:
        self.last_result = result
        files = "<br>".join(f"<code>{p}</code>" for p in result.paths)
        extra = ""
        if result.format == "html" and not result.details.get("results"):
            extra = "<br><i>No result summary: this configuration is not evaluated.</i>"
        self.resultLabel.setText(f"<b>Wrote</b><br>{files}{extra}")
        self.unsupportedList.clear()
        if result.unsupported:
            n = len(result.unsupported)
            self.unsupportedLabel.setText(
                f"<b>{n} layer(s) this format cannot express</b> — how each was handled:"
            )
            for fqn, reason in result.unsupported:
                self.unsupportedList.addItem(f"{fqn}: {reason}")
            self.unsupportedList.setVisible(True)
        else:
            self.unsupportedLabel.setText("Every layer's scheme is expressed exactly.")
            self.unsupportedList.setVisible(False)
        self.exported.emit(result)

    def _on_failed(self, exc: BaseException) -> None:
        self.resultLabel.setText("<b>Nothing was written.</b>")
        self.errors.report("Export failed", exc)
        self.exportFailed.emit(str(exc))

    def unsupported_names(self) -> list[str]:
        """The layer names listed as not expressible by the last export."""
        return [
            self.unsupportedList.item(i).text().split(":", 1)[0]
            for i in range(self.unsupportedList.count())
        ]

    def shutdown(self, timeout: float = 10.0) -> bool:
        return self.runner.shutdown(timeout)


def _safe(name: str) -> str:
    """A file-name-safe form of a configuration name."""
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip())
    return out or "config"
