"""The main window's file and help actions: open a model / source / data, load and save
configurations, About and the quick guide (a mixin of :class:`MainWindow`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from quantviz.gui.dialogs import about_text, help_text
from quantviz.gui.errors import guarded

__all__ = ["FileActions", "model_source_of"]


def model_source_of(path: str) -> str:
    """The model source of a file picked in the open dialog: a Hugging Face checkpoint's
    ``config.json`` stands for its folder."""
    p = Path(path)
    return str(p.parent) if p.name == "config.json" else path


class FileActions:
    """Needs ``controller``, ``session``, ``errors``, ``jobs``, ``statsRunner``, ``dataRunner``,
    ``open_model``, ``push_config`` and ``_start_stats`` from the window."""

    controller: Any
    session: Any
    errors: Any
    jobs: Any
    statsRunner: Any
    dataRunner: Any
    dataLoaded: Any
    dataDialog: Any

    def _settings(self) -> QSettings:
        return QSettings("quantviz", "quantviz")

    def ask_open_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open model",
            str(self._settings().value("lastDir", "")),
            "Models (*.pt *.pth *.pt2 *.ts *.safetensors *.bin *.onnx config.json);;All files (*)",
        )
        if path:
            self._settings().setValue("lastDir", path.rsplit("/", 1)[0])
            self.open_model(model_source_of(path))

    def ask_open_model_folder(self) -> None:
        """File > Open model folder…: a Hugging Face checkpoint folder."""
        path = QFileDialog.getExistingDirectory(
            self, "Open model folder", str(self._settings().value("lastDir", ""))
        )
        if path:
            self._settings().setValue("lastDir", path)
            self.open_model(path)

    def ask_open_source(self) -> None:
        text, ok = QInputDialog.getText(
            self,
            "Open model source",
            "sample:NAME, a model file, or weights.safetensors::package.module:factory",
            text=self.session.handle.source if self.session.handle is not None else "sample:",
        )
        if ok and text.strip():
            self.open_model(text.strip())

    def ask_open_data(self) -> None:
        """File > Open data…: a typed source (``sample:digits``, a path) or a picked file,
        pre-filled with the current data source (see :mod:`quantviz.gui.data_dialog`)."""
        from quantviz.gui.data_dialog import DataSourceDialog

        s = self.session
        current = s.data_source if s.handle is not None else None
        dlg = DataSourceDialog(s.handle, current, str(self._settings().value("lastDir", "")), self)
        self.dataDialog = dlg

        def chosen() -> None:
            source = dlg.source()
            if "/" in source:
                self._settings().setValue("lastDir", source.rsplit("/", 1)[0])
            self.open_data(source)

        dlg.accepted.connect(chosen)
        dlg.open()

    @guarded("Could not open the data")
    def open_data(self, source: str) -> None:
        """Load evaluation data ``source`` for the current model, in the background (checking
        it against the model runs the model); the old data stays until it has loaded."""
        job = self.controller.open_data_job(source)
        self._data_job = job
        self.dataRunner.start(job.label, job.factory)

    def _on_data(self, data: Any) -> None:
        self.jobs.reset()
        self.statsRunner.cancel()
        self._data_job.on_done(data)
        self.dataLoaded.emit(str(getattr(data, "name", "")))
        self._start_stats()

    def ask_load_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load configuration", "", "Configurations (*.json *.yaml *.yml)"
        )
        if path:
            self.load_config(path)

    @guarded("Could not load the configuration")
    def load_config(self, path: str) -> None:
        from quantviz.io import load_config

        cfg = load_config(path)
        unknown = cfg.unknown_keys(self.session.fqns) if self.session.handle else []
        if unknown:
            raise ValueError(f"{path}: layers {', '.join(unknown)} are not in this model")
        self.push_config(cfg, f"load {path.rsplit('/', 1)[-1]}")

    def ask_save_config(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Save configuration",
            f"{self.session.current_name}.json",
            "JSON (*.json);;YAML (*.yaml)",
        )
        if path:
            self.save_config(path)

    @guarded("Could not save the configuration")
    def save_config(self, path: str) -> None:
        from quantviz.io import save_config

        save_config(self.controller.config_for_export(), path)
        self.statusBar().showMessage(f"saved {path}", 4000)

    # -- help ----------------------------------------------------------------------------------
    def show_about(self) -> None:
        QMessageBox.about(self, "About quantviz", about_text())

    def show_help(self) -> None:
        box = QMessageBox(self)
        box.setObjectName("helpBox")
        box.setWindowTitle("quantviz — quick guide")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(help_text())
        box.setModal(False)
        box.show()
        self._help_box = box
