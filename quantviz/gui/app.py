"""Entry points of the desktop app: :func:`create_main_window` and :func:`run`."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import weakref

from PySide6.QtCore import QSignalBlocker
from PySide6.QtWidgets import QApplication, QMainWindow

__all__ = ["DEFAULT_SOURCE", "create_main_window", "run"]

DEFAULT_SOURCE = "sample:digits_cnn"


def _app() -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    app.setApplicationName("quantviz")
    app.setOrganizationName("quantviz")
    return app  # type: ignore[return-value]


def create_main_window(
    source: str | None = None, data: str | None = None, *, dark: bool | None = None
) -> QMainWindow:
    """Build the main window (no ``exec()``) and start opening ``source`` right after it is
    shown (``sample:digits_cnn`` when None). ``dark`` picks the palette (default:
    ``$QUANTVIZ_THEME == "dark"``). The window emits ``modelLoaded`` when the model is in.
    """
    from quantviz.gui.main_window import MainWindow, schedule_open
    from quantviz.gui.theme import apply_theme

    app = _app()
    if dark is None:
        dark = os.environ.get("QUANTVIZ_THEME", "").lower() == "dark"
    apply_theme(app, dark)
    win = MainWindow()
    with QSignalBlocker(win.darkAction):  # the palette is applied already
        win.darkAction.setChecked(dark)
    schedule_open(win, source or DEFAULT_SOURCE, data)
    ref = weakref.ref(win)

    def stop_jobs() -> None:  # exiting without closing the window: stop its threads first
        w = ref()
        if w is not None:
            with contextlib.suppress(RuntimeError):  # its C++ side is already gone
                w.shutdown(5.0)

    atexit.register(stop_jobs)
    return win


def run(source: str | None = None, data: str | None = None) -> int:
    """Run the app until its window closes; returns the exit code (for ``quantviz``)."""
    from quantviz.gui.errors import install_excepthook

    app = _app()
    win = create_main_window(source, data)
    restore = install_excepthook(win.errors)  # type: ignore[attr-defined]
    win.show()
    try:
        return int(app.exec())
    finally:
        restore()
