"""quantviz.io.atomic: all-or-nothing writes."""

from __future__ import annotations

import os
import pathlib
import re
import stat
import tempfile
import time

import pytest

from quantviz.io.atomic import (
    STALE_AFTER,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    is_temp_name,
    sweep_stale_temp_files,
)


def test_write_bytes_and_text(tmp_path):
    p = tmp_path / "a.bin"
    atomic_write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    atomic_write_text(p, "h\u00e9\r\nx")
    assert p.read_bytes() == "h\u00e9\r\nx".encode()
    assert os.listdir(tmp_path) == ["a.bin"]


def test_writer_failure_keeps_old_content_and_removes_temp(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half-way"), atomic_path(p) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("half-way")
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_failure_creates_no_file(tmp_path):
    p = tmp_path / "new.json"
    with pytest.raises(KeyboardInterrupt), atomic_path(p) as tmp:
        tmp.write_text("{")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_temp_path_is_next_to_target_and_keeps_suffix(tmp_path):
    p = tmp_path / "model.onnx"
    with atomic_path(p) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.suffix == ".onnx"
        assert tmp.name.startswith(".model.")
        assert not p.exists()
        tmp.write_bytes(b"new")
    assert p.read_bytes() == b"new"


def test_writer_that_deletes_the_temp_file(tmp_path):
    p = tmp_path / "x.txt"
    with pytest.raises(FileNotFoundError, match="did not create"), atomic_path(p) as tmp:
        tmp.unlink()
    assert os.listdir(tmp_path) == []


def test_keeps_mode_of_replaced_file(tmp_path):
    p = tmp_path / "script.sh"
    p.write_text("old")
    p.chmod(0o750)
    atomic_write_text(p, "new")
    assert stat.S_IMODE(p.stat().st_mode) == 0o750
    assert p.read_text() == "new"


def test_writes_through_symlink(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink()
    assert real.read_text() == "new"


def test_directory_target_and_missing_directory(tmp_path):
    with pytest.raises(IsADirectoryError):
        atomic_write_bytes(tmp_path, b"x")
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "no" / "f.bin", b"x")
    assert os.listdir(tmp_path) == []


def test_unencodable_text_writes_nothing(tmp_path):
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(tmp_path / "a.txt", "\udc80")
    assert os.listdir(tmp_path) == []


# -- stale temporary files ----------------------------------------------------------------------
def _age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t), follow_symlinks=False)


def _our_temp(folder, stem="out", suffix=".json"):
    """A temporary file exactly as atomic_path names it (a writer killed before the rename)."""
    fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=folder)
    os.write(fd, b"half")
    os.close(fd)
    return pathlib.Path(name)


def test_stale_temp_files_of_ours_are_swept_on_the_next_write(tmp_path):
    old1 = _our_temp(tmp_path)
    old2 = _our_temp(tmp_path, "model", ".safetensors")
    old3 = _our_temp(tmp_path, "noext", "")
    fresh = _our_temp(tmp_path)  # another process may be writing it right now
    for p in (old1, old2, old3):
        _age(p, STALE_AFTER + 5)
    # look-alikes that are not ours to delete, however old
    keep = [
        tmp_path / ".notes.tmp.json",
        tmp_path / "out.abcdefgh.tmp.json",
        tmp_path / ".out.ABCDEFGH.tmp.json",
        tmp_path / ".out.abcdefgh.tmp.json.bak",
    ]
    for p in keep:
        p.write_text("user data")
        _age(p, 3600)
    link = tmp_path / ".x.abcdefgh.tmp.json"
    link.symlink_to(tmp_path / ".notes.tmp.json")
    _age(link, 3600)
    folder = tmp_path / ".y.abcdefgh.tmp.json"
    folder.mkdir()
    _age(folder, 3600)

    atomic_write_text(tmp_path / "other.txt", "x")
    names = set(os.listdir(tmp_path))
    assert not {old1.name, old2.name, old3.name} & names
    assert {fresh.name, link.name, folder.name, "other.txt"} | {p.name for p in keep} == names
    assert all(is_temp_name(n) for n in (old1.name, old2.name, old3.name, fresh.name))


def test_sweep_returns_what_it_removed(tmp_path):
    p = _our_temp(tmp_path)
    assert sweep_stale_temp_files(tmp_path) == []
    _age(p, STALE_AFTER + 1)
    assert sweep_stale_temp_files(tmp_path) == [p]
    assert sweep_stale_temp_files(tmp_path / "missing") == []


# -- targets that cannot be written: an error naming the path, the old file intact -------------
def test_dangling_symlink_is_an_error_naming_it(tmp_path):
    link = tmp_path / "out.json"
    link.symlink_to(tmp_path / "gone" / "real.json")
    with pytest.raises(FileNotFoundError, match=r"dangling symlink .*out\.json"):
        atomic_write_text(link, "new")
    link2 = tmp_path / "out2.json"
    link2.symlink_to(tmp_path / "real2.json")
    with pytest.raises(FileNotFoundError) as info:
        atomic_write_text(link2, "new")
    assert str(link2) in str(info.value) and "real2.json" in str(info.value)
    assert link.is_symlink() and link2.is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["out.json", "out2.json"]


def test_errors_name_the_target(tmp_path):
    with pytest.raises(IsADirectoryError, match=re.escape(str(tmp_path))):
        atomic_write_bytes(tmp_path, b"x")
    target = tmp_path / "no" / "f.bin"
    with pytest.raises(FileNotFoundError) as info:
        atomic_write_bytes(target, b"x")
    assert str(target) in str(info.value) and "does not exist" in str(info.value)
