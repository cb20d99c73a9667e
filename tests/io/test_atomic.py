"""quantviz.io.atomic: all-or-nothing writes."""

from __future__ import annotations

import os
import stat

import pytest

from quantviz.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text


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
