"""Data files that claim more than they hold, or more than memory allows, are refused first.

Every file is built here: a genuine ``.npz`` zip bomb (2 GiB of zeros deflated to ~9 MB),
``.npy`` headers that claim a terabyte, a torch.save archive whose storage claims one, sparse,
meta and NaN tensors. The refusals come before any allocation of the claimed size.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import resource
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantviz.data import DataError, load_data
from quantviz.model import load_model
from quantviz.model.limits import LIMIT_ENV, load_limit

MiB = 1 << 20


@pytest.fixture(scope="module")
def handle():
    return load_model("sample:digits_cnn")


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def write_zeros_npz(path: Path, name: str, shape: tuple[int, ...], descr: str = "<f8") -> None:
    """An honest, deflated .npz of zeros: its directory and header tell the truth."""
    nbytes = int(np.prod(shape)) * np.dtype(descr).itemsize
    chunk = bytes(16 * MiB)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open(f"{name}.npy", "w", force_zip64=True) as fh,
    ):
        fh.write(_npy_header(shape, descr))
        left = nbytes
        while left:
            fh.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.slow  # builds 2 GiB of deflated zeros (~2 s of CPU)
def test_npz_bomb_refused_before_inflating(tmp_path, handle):
    bomb = tmp_path / "bomb.npz"
    write_zeros_npz(bomb, "x", (1 << 28,))  # 2 GiB of float64 zeros
    assert bomb.stat().st_size < 16 * MiB
    before = _maxrss_mib()
    with pytest.raises(DataError) as info:
        load_data(str(bomb), handle)
    msg = str(info.value)
    assert "bomb.npz" in msg and "claims 2.0 GiB (2,147,483,7" in msg and "load limit" in msg
    assert _maxrss_mib() - before < 256  # nothing was inflated


def test_limit_follows_the_environment(tmp_path, handle, monkeypatch):
    path = tmp_path / "d.npz"
    write_zeros_npz(path, "x", (1024, 1, 8, 8), "<f4")  # 256 KiB
    monkeypatch.setenv(LIMIT_ENV, str(512 * 1024))  # needs 3 x 256 KiB
    assert load_limit() == 512 * 1024
    with pytest.raises(DataError, match=r"d\.npz: .*claims 256\.\d KiB.*needs about 3x"):
        load_data(str(path), handle)
    monkeypatch.setenv(LIMIT_ENV, str(1 * MiB))
    assert len(load_data(str(path), handle)) == 1024
    monkeypatch.setenv(LIMIT_ENV, "lots")
    with pytest.raises(ValueError, match=LIMIT_ENV):
        load_limit()


def _npz_with_member(path: Path, name: str, header: bytes, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{name}.npy", header + payload)


def test_npy_header_claiming_a_terabyte(tmp_path, handle):
    path = tmp_path / "tera.npz"
    _npz_with_member(path, "x", _npy_header((1 << 37,), "<f8"), bytes(64))
    with pytest.raises(
        DataError, match=r"tera\.npz: x: shape \(137438953472,\) float64 claims 1\.0 TiB"
    ):
        load_data(str(path), handle)


def test_npy_header_disagreeing_with_the_member(tmp_path, handle):
    path = tmp_path / "short.npz"
    _npz_with_member(path, "x", _npy_header((4, 1, 8, 8)), bytes(4 * 64 * 4 - 8))
    with pytest.raises(DataError, match=r"short\.npz: x: header claims .* holds 1016 B"):
        load_data(str(path), handle)


def test_torch_storage_claiming_a_terabyte(tmp_path, handle):
    """A torch.save archive whose pickle claims a 1 TiB storage over a 16-byte record."""
    sentinel = object()
    numel = 1 << 38

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is sentinel:
                return ("storage", torch.FloatStorage, "0", "cpu", numel)
            return None

    class Fake:
        def __reduce__(self):
            args = (sentinel, 0, (numel,), (1,), False, collections.OrderedDict())
            return (torch._utils._rebuild_tensor_v2, args)

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"x": Fake()})
    path = tmp_path / "tera.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/data/0", bytes(16))
        zf.writestr("archive/version", "3\n")
    before = _maxrss_mib()
    with pytest.raises(DataError, match=r"tera\.pt: not a readable .*1099511627776"):
        load_data(str(path), handle)
    assert _maxrss_mib() - before < 256


def test_tensor_view_claiming_terabytes(tmp_path, handle):
    """Stride 0: a 1.5 KB .pt whose tensor claims 4 TiB over a single stored element."""
    path = tmp_path / "expand.pt"
    torch.save({"x": torch.zeros(1, 1, 1, 1).expand(1 << 34, 1, 8, 8)}, str(path))
    assert path.stat().st_size < 4096
    with pytest.raises(
        DataError, match=r"expand\.pt: x: shape \(17179869184, 1, 8, 8\) .*4\.0 TiB"
    ):
        load_data(str(path), handle)


def test_torch_zip_bomb(tmp_path, handle, monkeypatch):
    """A torch.save archive whose record inflates past the limit is refused before reading."""
    monkeypatch.setenv(LIMIT_ENV, str(2 * MiB))
    good = tmp_path / "good.pt"
    torch.save({"x": torch.zeros(4096, 1, 8, 8)}, str(good))  # 1 MiB of floats
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    assert bomb.stat().st_size < 64 * 1024
    with pytest.raises(DataError, match=r"bomb\.pt: its \d+ zip member\(s\) .*claims 1\.0 MiB"):
        load_data(str(bomb), handle)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: torch.zeros(4, 1, 8, 8).to_sparse(), r"x: a torch\.sparse_coo tensor"),
        (lambda: torch.empty(1 << 40, 1, 8, 8, device="meta"), r"x: a meta tensor"),
        (lambda: torch.zeros(4, 1, 8, 8, dtype=torch.complex64), r"x: unsupported tensor dtype"),
    ],
)
def test_unusable_tensors(tmp_path, handle, make, match):
    path = tmp_path / "t.pt"
    torch.save({"x": make()}, str(path))
    with pytest.raises(DataError, match=r"t\.pt: " + match):
        load_data(str(path), handle)


def test_nan_and_inf_name_the_file_field_and_sample(tmp_path, handle):
    x = torch.rand(6, 1, 8, 8)
    x[2, 0, 3, 3] = float("nan")
    x[4, 0, 0, 0] = float("inf")
    path = tmp_path / "nan.pt"
    torch.save({"x": x}, str(path))
    with pytest.raises(
        DataError,
        match=r"nan\.pt: x: contains 1 NaN and 1 infinite value\(s\) \(first in sample 2\)",
    ):
        load_data(str(path))  # without a model too
    calib = torch.rand(3, 1, 8, 8)
    calib[1] = float("-inf")
    torch.save({"x": torch.rand(6, 1, 8, 8), "calib_x": calib}, str(path))
    with pytest.raises(DataError, match=r"nan\.pt: calib_x: contains 0 NaN and 64 infinite"):
        load_data(str(path), handle)


def test_special_files_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"pipe\.npz: not a regular file"):
        load_data(str(fifo))
    with pytest.raises(DataError, match=r"is a directory"):
        load_data(str(tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked.npz"
    np.savez(path, x=np.zeros((2, 1, 8, 8), np.float32))
    path.chmod(0)
    with pytest.raises(DataError, match=r"locked\.npz: cannot be read \(Permission denied\)"):
        load_data(str(path))


@given(
    shape=st.lists(st.integers(min_value=0, max_value=1 << 20), min_size=1, max_size=5),
    descr=st.sampled_from(["<f4", "<f8", "<f2", "|u1", "<i8"]),
    limit=st.integers(min_value=1, max_value=1 << 34),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_header_claims_against_the_limit(tmp_path_factory, shape, descr, limit):
    """Any declared shape: refused by size iff 3 x its bytes (or the member's) exceed the
    limit, else by content; never an allocation of the claimed size (16 bytes are held)."""
    path = tmp_path_factory.mktemp("claims") / "c.npz"
    header = _npy_header(tuple(shape), descr)
    _npz_with_member(path, "x", header, bytes(16))
    claimed = int(np.prod(shape, dtype=object)) * np.dtype(descr).itemsize
    old = os.environ.get(LIMIT_ENV)
    os.environ[LIMIT_ENV] = str(limit)
    try:
        effective = load_limit()
        try:
            load_data(str(path))
            msg = None
        except DataError as exc:
            msg = str(exc)
    finally:
        if old is None:
            del os.environ[LIMIT_ENV]
        else:
            os.environ[LIMIT_ENV] = old
    if 3 * (len(header) + 16) > effective or 3 * claimed > effective:
        assert msg is not None and "over the load limit" in msg, msg
    elif claimed != 16:
        assert msg is not None and "holds 16 B" in msg, msg
    else:  # an honest 16-byte array: loads, or is refused for its content (e.g. no samples)
        assert msg is None or "load limit" not in msg
