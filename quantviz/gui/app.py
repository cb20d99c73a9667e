"""Entry points of the desktop app: :func:`create_main_window` and :func:`run`."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import sys
import weakref
from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import QLibraryInfo, QSignalBlocker
from PySide6.QtWidgets import QApplication, QMainWindow

__all__ = [
    "DEFAULT_SOURCE",
    "QtPlatformUnavailable",
    "check_platform",
    "create_main_window",
    "run",
    "xcb_plugin_problem",
]

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


class QtPlatformUnavailable(RuntimeError):
    """Qt could not open a window here; the message says what to install or set (one line)."""


# The system libraries Qt's xcb platform plugin (and QtGui under it) link against, with the
# Debian/Ubuntu package of each: `readelf -d` NEEDED of PySide6's libqxcb.so, libQt6XcbQpa
# and libQt6Gui, mapped with `dpkg -S`. scripts/install_system_deps.sh installs the same set.
XCB_LIBRARY_PACKAGES: dict[str, str] = {
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
}
_CANNOT_OPEN = re.compile(r"([\w.+-]+\.so[\w.]*): cannot open shared object file")


def _loads(library: str) -> bool:
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def xcb_plugin_problem(plugin: str | os.PathLike[str]) -> str | None:
    """Why the platform plugin library ``plugin`` cannot be loaded (one line), or None.

    Loads it with the dynamic loader as Qt would; when that fails, names every missing
    library of :data:`XCB_LIBRARY_PACKAGES` (the loader reports only the first) and the
    packages that provide them.
    """
    try:
        ctypes.CDLL(os.fspath(plugin))
    except OSError as exc:
        reason = " ".join(str(exc).split())
    else:
        return None
    first = _CANNOT_OPEN.search(reason)
    if first is None:  # not a missing library (a broken file, a symbol, ...): say what it is
        return f"Qt's platform plugin {os.fspath(plugin)} does not load: {reason}"
    missing = [lib for lib in XCB_LIBRARY_PACKAGES if not _loads(lib)]
    if first.group(1) not in missing:
        missing.insert(0, first.group(1))
    packages = " ".join(
        dict.fromkeys(XCB_LIBRARY_PACKAGES[lib] for lib in missing if lib in XCB_LIBRARY_PACKAGES)
    )
    unknown = ", ".join(lib for lib in missing if lib not in XCB_LIBRARY_PACKAGES)
    todo = []
    if packages:
        todo.append(
            f"install the packages {packages} (sudo apt-get install {packages}, "
            "or scripts/install_system_deps.sh)"
        )
    if unknown:
        todo.append(f"install what provides {unknown}")
    return f"Qt's xcb platform plugin cannot load (missing {', '.join(missing)}): " + "; ".join(
        todo
    )


def _x_display_problem(display: str) -> str | None:
    """Connect to the X server as Qt's xcb plugin will (libxcb); None when it answers."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:  # reported by the plugin check
        return None
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    conn = xcb.xcb_connect(display.encode(), None)
    try:
        failed = xcb.xcb_connection_has_error(conn)
    finally:
        xcb.xcb_disconnect(conn)
    if failed:
        return (
            f"cannot connect to the X display {display!r} (DISPLAY): is the X server running "
            "and may this user connect to it (XAUTHORITY)?"
        )
    return None


def _xcb_plugin_path(env: Mapping[str, str]) -> Path:
    folder = env.get("QT_QPA_PLATFORM_PLUGIN_PATH") or os.path.join(
        QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath), "platforms"
    )
    return Path(folder) / "libqxcb.so"


def check_platform(env: Mapping[str, str] | None = None) -> None:
    """Raise :class:`QtPlatformUnavailable` when Qt would abort opening a window here.

    Qt ends the process (``qFatal``: "could not load the Qt platform plugin", core dump)
    when its platform plugin does not load, so this runs before the QApplication exists.
    On Linux with the xcb plugin (``QT_QPA_PLATFORM`` unset or ``xcb``; unset with
    ``WAYLAND_DISPLAY`` lets Qt pick Wayland, which is not checked), it checks that
    ``DISPLAY`` is set, that the plugin's shared library loads, and that the X server
    answers. Other platforms (``offscreen``, ``wayland``, macOS, Windows) are left to Qt.
    """
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return
    requested = [p.split(":", 1)[0].strip() for p in env.get("QT_QPA_PLATFORM", "").split(";")]
    requested = [p for p in requested if p]
    if requested and requested[0] != "xcb":
        return
    if not requested and env.get("WAYLAND_DISPLAY"):
        return
    display = env.get("DISPLAY", "")
    if not display:
        raise QtPlatformUnavailable(
            "no display to open the window on: DISPLAY is not set (start quantviz in a desktop "
            "session or under Xvfb, e.g. `Xvfb :99 & DISPLAY=:99 quantviz`; the subcommands "
            "eval, sweep, sensitivity and export need no display)"
        )
    plugin = _xcb_plugin_path(env)
    if plugin.is_file():  # a Qt not from the wheel: let Qt speak for itself
        problem = xcb_plugin_problem(plugin)
        if problem:
            raise QtPlatformUnavailable(problem)
    problem = _x_display_problem(display)
    if problem:
        raise QtPlatformUnavailable(problem)


def run(source: str | None = None, data: str | None = None) -> int:
    """Run the app until its window closes; returns the exit code (for ``quantviz``).

    Raises :class:`QtPlatformUnavailable` (before any window exists) when Qt cannot open one.
    """
    from quantviz.gui.errors import install_excepthook

    if QApplication.instance() is None:
        check_platform()
    app = _app()
    win = create_main_window(source, data)
    restore = install_excepthook(win.errors)  # type: ignore[attr-defined]
    win.show()
    try:
        return int(app.exec())
    finally:
        restore()
