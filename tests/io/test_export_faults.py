"""Exports to targets that cannot be written (issue 15, "Files that must never be torn").

A full disk (a 64 kB tmpfs), a read-only / unwritable folder, a path that is a directory and
a dangling symlink: each format fails with a ``ValueError`` / ``OSError`` whose message
names the path, the previous file is intact and no temporary file is left behind. The tmpfs
cases need root (``mount``) and are skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest
from test_export_common import SAMPLES, handle_and_data

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.io.exporters import FORMATS, SUFFIXES, export

CFG = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=4, granularity="per_channel")))
PREVIOUS = b"the previous export\n"


def _formats():
    out = []
    for f in FORMATS:
        if f == "onnx":
            try:
                import onnx  # noqa: F401
            except ImportError:
                out.append(pytest.param(f, marks=pytest.mark.skip(reason="onnx not installed")))
                continue
        out.append(f)
    return out


def _mount(folder, *options):
    if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(("size=64k", *options)), "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


def _umount(folder):
    subprocess.run(["umount", str(folder)], capture_output=True, check=False)


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 64 kB tmpfs holding the previous export and a filler using the rest."""
    d = tmp_path / "full"
    d.mkdir()
    _mount(d)
    try:
        filler = d / "filler.bin"
        with contextlib.suppress(OSError), open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        yield d
    finally:
        _umount(d)


@pytest.fixture
def read_only(tmp_path):
    """A folder holding the previous exports that cannot be written to."""
    d = tmp_path / "ro"
    d.mkdir()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        _mount(d)  # root writes anywhere: a read-only file system stops it
        try:
            for fmt in FORMATS:
                (d / f"out{SUFFIXES[fmt][0]}").write_bytes(PREVIOUS)
            r = subprocess.run(
                ["mount", "-o", "remount,ro", str(d)], capture_output=True, text=True, check=False
            )
            if r.returncode != 0:
                pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")
            yield d
        finally:
            _umount(d)
    else:
        for fmt in FORMATS:
            (d / f"out{SUFFIXES[fmt][0]}").write_bytes(PREVIOUS)
        d.chmod(0o555)
        try:
            yield d
        finally:
            d.chmod(0o755)


@pytest.mark.parametrize("fmt", _formats())
def test_full_disk(full_disk, fmt):
    h, _ = handle_and_data(SAMPLES[0])
    out = full_disk / f"out{SUFFIXES[fmt][0]}"
    before = sorted(os.listdir(full_disk))
    with pytest.raises((ValueError, OSError)) as info:
        export(h, CFG, fmt, out)
    msg = str(info.value)
    assert str(out) in msg and "No space left on device" in msg
    assert sorted(os.listdir(full_disk)) == before  # nothing new, no temporary file

    # and with a previous export in place: it is kept as it was
    (full_disk / "filler.bin").unlink()
    out.write_bytes(PREVIOUS)
    with contextlib.suppress(OSError), open(full_disk / "filler.bin", "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    with pytest.raises((ValueError, OSError), match="No space left on device"):
        export(h, CFG, fmt, out)
    assert out.read_bytes() == PREVIOUS
    assert sorted(os.listdir(full_disk)) == sorted({out.name, "filler.bin"})


@pytest.mark.parametrize("fmt", _formats())
def test_unwritable_folder(read_only, fmt):
    h, _ = handle_and_data(SAMPLES[0])
    out = read_only / f"out{SUFFIXES[fmt][0]}"
    with pytest.raises((ValueError, OSError)) as info:
        export(h, CFG, fmt, out)
    msg = str(info.value)
    assert str(out) in msg
    assert "Read-only file system" in msg or "Permission denied" in msg
    assert out.read_bytes() == PREVIOUS
    assert sorted(os.listdir(read_only)) == sorted(f"out{SUFFIXES[f][0]}" for f in FORMATS)


@pytest.mark.parametrize("fmt", _formats())
def test_path_that_is_a_directory(tmp_path, fmt):
    h, _ = handle_and_data(SAMPLES[0])
    out = tmp_path / f"out{SUFFIXES[fmt][0]}"
    out.mkdir()
    (out / "inside.txt").write_bytes(PREVIOUS)
    with pytest.raises((ValueError, OSError)) as info:
        export(h, CFG, fmt, out)
    assert str(out) in str(info.value) and "Is a directory" in str(info.value)
    assert (out / "inside.txt").read_bytes() == PREVIOUS
    assert os.listdir(tmp_path) == [out.name]


@pytest.mark.parametrize("fmt", _formats())
def test_dangling_symlink(tmp_path, fmt):
    h, _ = handle_and_data(SAMPLES[0])
    out = tmp_path / f"out{SUFFIXES[fmt][0]}"
    out.symlink_to(tmp_path / "elsewhere" / "gone")
    with pytest.raises((ValueError, OSError)) as info:
        export(h, CFG, fmt, out)
    assert str(out) in str(info.value) and "dangling symlink" in str(info.value)
    assert out.is_symlink() and os.readlink(out) == str(tmp_path / "elsewhere" / "gone")
    assert os.listdir(tmp_path) == [out.name]
