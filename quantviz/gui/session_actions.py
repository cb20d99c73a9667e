"""File menu actions for whole sessions and config import: Save / Open session, Open Recent,
Import config.

A ``.quantviz`` file (:mod:`quantviz.io.session_file`) holds the model source, the data
source, the named configurations and their results. Opening one reloads the model through the
window's normal loading path; the configurations are checked against the loaded model in the
loading thread, so a file that does not fit (or a model that fails to load) leaves the open
session untouched. The recent-files list lives in ``QSettings`` (INI format, so tests can
point it at a temporary directory with ``QSettings.setPath``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenu

__all__ = ["MAX_RECENT", "RECENT_KEY", "SessionActions", "recent_settings"]

MAX_RECENT = 8
RECENT_KEY = "recentSessions"


def recent_settings() -> QSettings:
    """The settings store of the recent-sessions list (user scope, INI format)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "quantviz", "quantviz")


class SessionActions(QObject):
    """Session and import actions of ``window``; builds the ``recentMenu``.

    Signals: ``sessionSaved(path)``, ``sessionOpened(path)``, ``sessionFailed(message)``,
    ``configImported(path)``.
    """

    sessionSaved = Signal(str)
    sessionOpened = Signal(str)
    sessionFailed = Signal(str)
    configImported = Signal(str)

    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        #: the main window (its ``controller``, ``errors``, ``push_config`` and loading)
        self.win: Any = window
        self._pending: tuple[str, Any] | None = None
        self.recentMenu = QMenu("Open &Recent", window)
        self.recentMenu.setObjectName("recentMenu")
        self.recentMenu.aboutToShow.connect(self.rebuild_recent_menu)
        window.modelLoadFailed.connect(self._on_load_failed)
        window.modelLoaded.connect(self._on_loaded)
        # filled when opened (aboutToShow): building a window reads no settings
        self.recentMenu.addAction("No recent sessions").setEnabled(False)

    # -- recent files -------------------------------------------------------------------------
    def recent(self) -> list[str]:
        """Recent session files, newest first; files that no longer exist are pruned."""
        st = recent_settings()
        raw = st.value(RECENT_KEY, [])
        items = [raw] if isinstance(raw, str) else list(raw or [])
        kept = [p for p in items if isinstance(p, str) and Path(p).is_file()][:MAX_RECENT]
        if kept != items:
            st.setValue(RECENT_KEY, kept)
        return kept

    def add_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        items = [p for p in self.recent() if p != path]
        recent_settings().setValue(RECENT_KEY, [path, *items][:MAX_RECENT])
        self.rebuild_recent_menu()

    def clear_recent(self) -> None:
        recent_settings().setValue(RECENT_KEY, [])
        self.rebuild_recent_menu()

    def rebuild_recent_menu(self) -> None:
        m = self.recentMenu
        m.clear()
        items = self.recent()
        for i, p in enumerate(items):
            a = QAction(f"&{i + 1} {Path(p).name}", m)
            a.setToolTip(p)
            a.setStatusTip(p)
            a.setData(p)
            a.triggered.connect(lambda *_, path=p: self.open_session(path))
            m.addAction(a)
        if not items:
            a = m.addAction("No recent sessions")
            a.setEnabled(False)
        m.addSeparator()
        clear = m.addAction("Clear list")
        clear.setEnabled(bool(items))
        clear.triggered.connect(self.clear_recent)

    def recent_paths_in_menu(self) -> list[str]:
        return [a.data() for a in self.recentMenu.actions() if isinstance(a.data(), str)]

    # -- save -------------------------------------------------------------------------------------
    def ask_save_session(self) -> bool:
        """Ask for a file name and save; True when saved."""
        s = self.win.session
        base = (s.handle.name if s.handle is not None else "session") + ".quantviz"
        path, _ = QFileDialog.getSaveFileName(
            self.win, "Save session", base, "quantviz sessions (*.quantviz)"
        )
        if not path:
            return False
        return self.save_session(path if path.endswith(".quantviz") else path + ".quantviz")

    def save_session(self, path: str) -> bool:
        """Write the whole session to ``path``; True on success (errors are reported)."""
        try:
            self.win.controller.save_session(path)
        except (ValueError, OSError) as exc:
            self.win.errors.report("Could not save the session", exc)
            self.sessionFailed.emit(str(exc))
            return False
        self.add_recent(path)
        self.win.statusBar().showMessage(f"Saved session {path}", 4000)
        self.sessionSaved.emit(path)
        return True

    # -- open -------------------------------------------------------------------------------------
    def ask_open_session(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.win, "Open session", "", "quantviz sessions (*.quantviz);;All files (*)"
        )
        if path:
            self.open_session(path)

    def open_session(self, path: str, *, trust: bool = False) -> None:
        """Read ``path``, reload its model in the background, then restore its configs,
        results and current configuration. Any failure leaves the open session as it was.
        A model that runs code when loaded is opened only after the user agrees
        (``trust``), never silently."""
        if not trust and not self.win.may_discard():
            return
        try:
            job = self.win.controller.open_session_job(path, trust=trust)
        except (ValueError, OSError) as exc:
            self._fail(path, exc)
            return
        self._pending = (path, job.meta["session"])
        restore = job.on_done

        def done(opened: Any) -> Any:
            out = restore(opened)
            self.add_recent(path)
            self.win.statusBar().showMessage(f"Opened session {path}", 4000)
            self.sessionOpened.emit(path)
            return out

        job.on_done = done
        self.win._start_load(job)

    def _on_loaded(self, *_: Any) -> None:
        self._pending = None  # restored (or another model was opened meanwhile)

    def _on_load_failed(self, message: str) -> None:
        if self._pending is not None:
            path, _ = self._pending
            self._pending = None
            self.sessionFailed.emit(f"{path}: {message}")

    def _fail(self, path: str, exc: BaseException) -> None:
        self._pending = None
        self.win.errors.report(f"Could not open the session {Path(path).name}", exc)
        self.sessionFailed.emit(str(exc))

    # -- import a config ---------------------------------------------------------------------
    def ask_import_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.win, "Import configuration", "", "Configurations (*.json *.yaml *.yml)"
        )
        if path:
            self.import_config(path)

    def import_config(self, path: str) -> bool:
        """Check ``path`` against the open model and make it the current configuration's
        content (one undoable step). On any problem: all of them listed, nothing changed."""
        from quantviz.io.importing import ConfigImportError, import_config

        win = self.win
        name = Path(path).name
        try:
            if win.session.handle is None:
                raise ValueError("open a model before importing a configuration")
            cfg = import_config(path, win.session.handle)
        except ConfigImportError as exc:
            n = len(exc.problems)
            listing = "\n".join(f"• {p}" for p in exc.problems)
            win.errors.report(
                f"Could not import {name}: {n} problem{'s' if n != 1 else ''}",
                f"Nothing was changed.\n{listing}",
                details=f"{path}\n{listing}",
            )
            return False
        except (ValueError, OSError) as exc:
            win.errors.report(f"Could not import {name}", exc)
            return False
        win.push_config(cfg, f"import {name}")
        win.statusBar().showMessage(f"Imported {path} into {win.session.current_name}", 4000)
        self.configImported.emit(path)
        return True
