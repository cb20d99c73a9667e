"""File menu actions for whole sessions and config import: Save / Save as / Open session,
Open Recent, Import config.

Saving runs :meth:`quantviz.app.AppController.save_session_job` in its own background
:class:`~quantviz.gui.workers.Runner` (``saveRunner``; never replaced by an evaluation): the
window stays responsive, the status bar shows it on its own small indicator with its own Stop
(the main progress bar and Cancel stay with an evaluation or sweep running meanwhile), and a
cancel or failure leaves the previous files. Whoever needs the save to end first (closing
the window, opening another model or session after "Save" in the unsaved-work prompt) passes
``then``, run only once the save succeeded.

A ``.quantviz`` file (:mod:`quantviz.io.session_file`) holds the model source, the data
source, the named configurations and their results. Opening one reloads the model through the
window's normal loading path; the configurations are checked against the loaded model in the
loading thread, so a file that does not fit (or a model that fails to load) leaves the open
session untouched. The recent-files list lives in ``QSettings`` (INI format, so tests can
point it at a temporary directory with ``QSettings.setPath``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenu

from quantviz.gui.workers import Runner

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
        #: the file the session was last saved to or opened from (Save writes there)
        self.path: str | None = None
        self.saveRunner = Runner("saveRunner", self)
        self._save_job: Any = None
        self._then: list[Callable[[], Any]] = []
        self.saveRunner.finished.connect(self._on_saved)
        self.saveRunner.failed.connect(self._on_save_failed)
        self.saveRunner.cancelled.connect(self._on_save_cancelled)
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
    @property
    def saving(self) -> bool:
        """True while a save runs in the background."""
        return self.saveRunner.running

    def after_save(self, then: Callable[[], Any]) -> None:
        """Run ``then`` once the running save succeeded (dropped if it fails or is
        cancelled)."""
        self._then.append(then)

    def save(self, then: Callable[[], Any] | None = None) -> bool:
        """Save session (Ctrl+S): to the file it was last saved to or opened from, else
        ask for one. True when a save started; ``then`` runs once it succeeded."""
        if self.path is None:
            return self.ask_save_session(then)
        return self.start_save(self.path, then)

    def ask_save_session(self, then: Callable[[], Any] | None = None) -> bool:
        """Save session as… : ask for a file name and start saving; True when started."""
        if self._busy(then):
            return False
        s = self.win.session
        base = self.path or (s.handle.name if s.handle is not None else "session") + ".quantviz"
        path, _ = QFileDialog.getSaveFileName(
            self.win, "Save session", base, "quantviz sessions (*.quantviz)"
        )
        if not path:
            return False
        return self.start_save(path if path.endswith(".quantviz") else path + ".quantviz", then)

    def _busy(self, then: Callable[[], Any] | None) -> bool:
        if not self.saving:
            return False
        if then is not None:
            self.after_save(then)
        self.win.statusBar().showMessage(f"{self.saveRunner.label}: a save is under way", 4000)
        return True

    def start_save(self, path: str, then: Callable[[], Any] | None = None) -> bool:
        """Write the whole session to ``path`` in the background (the window stays
        responsive; the save indicator shows it, its Stop stops it leaving the previous files
        as they were). True when started; ``sessionSaved`` / ``sessionFailed`` tell the end;
        ``then`` runs after a successful save."""
        if self._busy(then):
            return False
        try:
            job = self.win.controller.save_session_job(path)
        except (ValueError, OSError) as exc:
            self.win.errors.report("Could not save the session", exc)
            self.sessionFailed.emit(str(exc))
            return False
        self._save_job = job
        self._then = [] if then is None else [then]
        self.saveRunner.start(job.label, job.factory)
        return True

    def cancel_save(self) -> None:
        """Stop the running save; the previous files stay as they were."""
        self.saveRunner.cancel()

    def _on_saved(self, out: Any) -> None:
        job, then = self._save_job, self._then
        self._save_job, self._then = None, []
        if job is None:
            return
        path = job.on_done(out)
        self.path = path
        self.add_recent(path)
        self.win.statusBar().showMessage(f"Saved session {path}", 4000)
        self.sessionSaved.emit(path)
        for f in then:
            f()

    def _on_save_failed(self, exc: BaseException) -> None:
        self._save_job, self._then = None, []
        self.win.errors.report("Could not save the session", exc)
        self.sessionFailed.emit(str(exc))

    def _on_save_cancelled(self) -> None:
        job = self._save_job
        if job is None:
            return
        # the writer stops at its next yield (at most one chunk away); a cancel that came
        # after its last yield did not stop it: then the files are saved, and it says so
        self.saveRunner.wait(30)
        if job.meta.get("written"):
            self._on_saved(job.meta["path"])
            return
        self._save_job, self._then = None, []
        path = job.meta["path"]
        self.win.statusBar().showMessage(f"Save cancelled: {path} is as it was before", 6000)
        self.sessionFailed.emit(f"{path}: save cancelled")

    def save_session(self, path: str) -> bool:
        """Write the whole session to ``path`` now, blocking (scripts, tests; the menu
        and the close prompt use :meth:`start_save`); True on success (errors are
        reported)."""
        try:
            self.win.controller.save_session(path)
        except (ValueError, OSError) as exc:
            self.win.errors.report("Could not save the session", exc)
            self.sessionFailed.emit(str(exc))
            return False
        self.path = path
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
        if not trust and not self.win.may_discard(lambda: self.open_session(path, trust=trust)):
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
            self.path = path
            self.add_recent(path)
            self.win.statusBar().showMessage(f"Opened session {path}", 4000)
            self.sessionOpened.emit(path)
            return out

        job.on_done = done
        self.win._start_load(job)

    def _on_loaded(self, *_: Any) -> None:
        if self._pending is None:  # a model opened, not a session: Save asks for a file
            self.path = None
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
