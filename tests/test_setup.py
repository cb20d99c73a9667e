"""Set-up on a fresh machine: the system-library script and the app's pre-flight check.

Without a display or with Qt's xcb plugin missing system libraries, Qt ends the process
(qFatal, core dump); ``quantviz`` must instead print one line naming what to install and
exit 2. These tests run real subprocesses and real shared libraries.
"""

from __future__ import annotations

import _ctypes
import ctypes
import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install_system_deps.sh"
HAS_QT = importlib.util.find_spec("PySide6") is not None
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux set-up")


def _env_without_display() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "QT_QPA_PLATFORM_PLUGIN_PATH"):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _script_table() -> dict[str, str]:
    text = SCRIPT.read_text(encoding="utf-8")
    block = text.split('LIBS="', 1)[1].split('"', 1)[0]
    return dict(line.split() for line in block.strip().splitlines())


def _elf_needed(path: Path) -> list[str]:
    """DT_NEEDED entries of an ELF64 little-endian shared object (independent of our code)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, path
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    dynamic = next(s for s in sections if s[1] == 6)  # SHT_DYNAMIC
    strtab = sections[dynamic[6]]  # sh_link -> .dynstr
    out = []
    for off in range(dynamic[4], dynamic[4] + dynamic[5], 16):
        tag, val = struct.unpack_from("<qQ", data, off)
        if tag == 0:
            break
        if tag == 1:  # DT_NEEDED
            start = strtab[4] + val
            out.append(data[start : data.index(b"\0", start)].decode())
    return out


@linux_only
def test_app_without_display_exits_2_with_one_line():
    out = subprocess.run(
        [sys.executable, "-m", "quantviz"],
        env=_env_without_display(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("quantviz: error: ")
    assert out.stdout == ""
    if HAS_QT:
        assert "DISPLAY is not set" in lines[0]
        assert "Xvfb" in lines[0]
    else:
        assert "quantviz[gui]" in lines[0]


@linux_only
def test_plugin_check_names_a_missing_library(tmp_path):
    pytest.importorskip("PySide6")
    from quantviz.gui.app import xcb_plugin_problem

    # A real shared object whose dependency libc.so.6 is renamed to one no system has.
    data = Path(_ctypes.__file__).read_bytes()
    assert b"libc.so.6\0" in data
    fake = tmp_path / "libqxcb.so"
    fake.write_bytes(data.replace(b"libc.so.6\0", b"libq.so.6\0"))
    assert "libq.so.6" in _elf_needed(fake)
    problem = xcb_plugin_problem(fake)
    assert problem is not None
    assert "\n" not in problem
    assert "(missing libq.so.6" in problem
    assert "install what provides libq.so.6" in problem
    # the unpatched library loads, so the check passes on it
    assert xcb_plugin_problem(Path(_ctypes.__file__)) is None


@linux_only
def test_plugin_check_reports_a_file_that_is_no_library(tmp_path):
    pytest.importorskip("PySide6")
    from quantviz.gui.app import xcb_plugin_problem

    fake = tmp_path / "platforms" / "libqxcb.so"
    fake.parent.mkdir()
    fake.write_text("not an ELF file\n", encoding="utf-8")
    problem = xcb_plugin_problem(fake)
    assert problem is not None and "\n" not in problem
    assert str(fake) in problem
    assert "does not load" in problem


@linux_only
def test_check_platform_decides_by_platform_and_display():
    pytest.importorskip("PySide6")
    from quantviz.gui.app import QtPlatformUnavailable, check_platform

    check_platform({"QT_QPA_PLATFORM": "offscreen"})  # not xcb: left to Qt
    check_platform({"WAYLAND_DISPLAY": "wayland-0"})  # Qt picks Wayland there
    with pytest.raises(QtPlatformUnavailable, match="DISPLAY is not set"):
        check_platform({})
    with pytest.raises(QtPlatformUnavailable, match="DISPLAY is not set"):
        check_platform({"QT_QPA_PLATFORM": "xcb"})
    # a display number nothing listens on: missing libraries or no X server, never a crash
    free = next(n for n in range(917, 999) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    with pytest.raises(QtPlatformUnavailable) as err:
        check_platform({"DISPLAY": f":{free}"})
    message = str(err.value)
    assert "\n" not in message
    assert f"':{free}'" in message or "apt-get install" in message


@linux_only
def test_plugin_library_table_covers_what_qt_links_against():
    """Every system library the wheel's xcb plugin and Qt libraries need is in both tables."""
    pytest.importorskip("PySide6")
    from PySide6.QtCore import QLibraryInfo

    from quantviz.gui.app import XCB_LIBRARY_PACKAGES

    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    libdir = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.LibrariesPath))
    files = [plugins / "platforms" / "libqxcb.so"] + [
        libdir / f"libQt6{name}.so.6" for name in ("Gui", "Widgets", "XcbQpa", "DBus")
    ]
    bundled = {p.name for p in libdir.iterdir()}
    glibc = re.compile(r"^(libc|libm|libdl|libpthread|librt|ld-linux.*|libstdc\+\+|libgcc_s)\.so")
    needed = {
        lib
        for f in files
        for lib in _elf_needed(f)
        if lib not in bundled and not glibc.match(lib) and lib not in ("libz.so.1",)
    }
    assert needed, files
    table = _script_table()
    assert needed <= set(XCB_LIBRARY_PACKAGES), needed - set(XCB_LIBRARY_PACKAGES)
    assert needed <= set(table), needed - set(table)
    # the script and the app's message name the same package for each library
    assert {k: table[k] for k in XCB_LIBRARY_PACKAGES} == XCB_LIBRARY_PACKAGES


def test_script_table_is_well_formed():
    table = _script_table()
    assert all(re.fullmatch(r"lib[\w.+-]+\.so\.\d+", so) for so in table)
    assert {"libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libgl1", "libegl1"} <= set(
        table.values()
    )


@linux_only
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_dry_run_lists_exactly_the_libraries_that_do_not_load():
    out = subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, "QUANTVIZ_DEPS_DRY_RUN": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    reported: set[str] = set()
    for line in lines:
        if line.startswith("install_system_deps: missing "):
            reported = set(line.split("missing ", 1)[1].split()) - {"ensurepip"}
    # independent of ldconfig: ask the dynamic loader
    does_not_load = set()
    for so in _script_table():
        try:
            ctypes.CDLL(so)
        except OSError:
            does_not_load.add(so)
    assert reported == does_not_load, (lines, does_not_load)
    if not reported:
        assert "all system libraries are present" in out.stdout
