"""Errors never close the app: a readable, non-blocking message with details on demand.

:class:`ErrorReporter` shows a non-modal ``QMessageBox`` (details in its "Show Details..."
area) and emits :attr:`ErrorReporter.errorShown` so tests can wait for it. :func:`guarded`
wraps slots so an exception in them is reported instead of propagating into Qt, and
:func:`install_excepthook` routes any other uncaught exception to the reporter.
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

__all__ = ["ErrorReporter", "guarded", "install_excepthook"]

F = TypeVar("F", bound=Callable[..., Any])


def describe(exc: BaseException) -> str:
    """One readable line for ``exc`` (its message, or its type when it has none)."""
    msg = str(exc).strip()
    return msg if msg else type(exc).__name__


class ErrorReporter(QObject):
    """Shows errors as non-modal message boxes and emits ``errorShown(title, message)``."""

    errorShown = Signal(str, str)

    def __init__(self, parent_widget: QWidget | None = None) -> None:
        super().__init__(parent_widget)
        self._parent = parent_widget
        self.last_box: QMessageBox | None = None
        self.history: list[tuple[str, str, str]] = []

    def report(self, title: str, exc: BaseException | str, details: str | None = None) -> None:
        """Show ``title`` + the exception's message; the traceback goes into the details."""
        if isinstance(exc, BaseException):
            message = describe(exc)
            if details is None:
                details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        else:
            message = exc
        self.history.append((title, message, details or ""))
        box = QMessageBox(self._parent)
        box.setObjectName("errorBox")
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("quantviz")
        box.setText(f"<b>{title}</b>")
        box.setInformativeText(message)
        if details:
            box.setDetailedText(details)
        box.setStandardButtons(QMessageBox.StandardButton.Ok)
        box.setModal(False)
        box.show()
        if self.last_box is not None:
            self.last_box.close()
        self.last_box = box
        self.errorShown.emit(title, message)


def guarded(title: str) -> Callable[[F], F]:
    """Decorate a method of an object with an ``errors`` ErrorReporter: report, don't raise."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(self, *args, **kwargs)
            except Exception as exc:
                self.errors.report(title, exc)
                return None

        return wrapper  # type: ignore[return-value]

    return deco


def install_excepthook(reporter: ErrorReporter) -> Callable[[], None]:
    """Route uncaught exceptions to ``reporter``; returns a function restoring the old hook."""
    old = sys.excepthook

    def hook(etype: type[BaseException], value: BaseException, tb: Any) -> None:
        if issubclass(etype, KeyboardInterrupt):
            old(etype, value, tb)
            return
        try:
            details = "".join(traceback.format_exception(etype, value, tb))
            reporter.report("Unexpected error", value, details)
        except Exception:  # pragma: no cover - never let the hook itself fail
            old(etype, value, tb)

    sys.excepthook = hook

    def restore() -> None:
        sys.excepthook = old

    return restore
