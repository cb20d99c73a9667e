"""load_data: bundled splits, user files, validation against the model before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quantviz.data import DataError, EvalData, load_data
from quantviz.model import load_model


@pytest.fixture(scope="module")
def handle():
    return load_model("sample:digits_cnn")


def _npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_bundled_digits(handle):
    d = load_data("sample:digits", handle)
    assert d.x.shape == (360, 1, 8, 8) and d.x.dtype == torch.float32
    assert d.y.dtype == torch.int64 and d.calib_x.shape == (256, 1, 8, 8)
    sizes = [(x.shape[0], y.shape[0]) for x, y in d.batches(100)]
    assert sizes == [(100, 100), (100, 100), (100, 100), (60, 60)]
    assert d.num_batches(100) == 4 and [c.shape[0] for c in d.calib_batches(200)] == [200, 56]
    assert load_data(None, handle).name == "sample:digits"
    with pytest.raises(ValueError, match="batch_size"):
        next(d.batches(0))
    with pytest.raises(DataError, match="sample:nope: unknown bundled data"):
        load_data("sample:nope")


def test_user_npz_with_labels_and_default_calibration(tmp_path, handle):
    x = np.random.default_rng(0).random((300, 1, 8, 8))  # float64 is cast to the model's dtype
    y = np.arange(300) % 10
    d = load_data(_npz(tmp_path, x=x, y=y), handle)
    assert isinstance(d, EvalData) and d.x.dtype == torch.float32 and d.has_labels
    assert d.calib_x.shape[0] == 256
    torch.testing.assert_close(d.calib_x, torch.from_numpy(x[:256]).float())


def test_user_pt_without_labels_and_explicit_calibration(tmp_path, handle):
    path = tmp_path / "d.pt"
    torch.save({"x": torch.rand(20, 1, 8, 8), "calib_x": torch.rand(7, 1, 8, 8)}, str(path))
    d = load_data(str(path), handle)
    assert d.y is None and not d.has_labels and d.calib_x.shape[0] == 7
    assert [y for _, y in d.batches(8)] == [None, None, None]


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((4, 1, 8, 9), np.float32)}, r"d\.npz: x: sample shape \(1, 8, 9\)"),
        ({"x": np.zeros((4, 64), np.float32)}, r"x: sample shape \(64,\)"),
        ({"x": np.zeros((4, 1, 8, 8), np.int64)}, r"x: must be floating point"),
        (
            {"x": np.zeros((4, 1, 8, 8), np.float32), "y": np.zeros(3, np.int64)},
            r"y: has 3 labels for 4 samples",
        ),
        (
            {"x": np.zeros((4, 1, 8, 8), np.float32), "y": np.array([0, 1, 2, 10])},
            r"y: labels must be in 0\.\.9 .*range 0\.\.10",
        ),
        (
            {"x": np.zeros((4, 1, 8, 8), np.float32), "y": np.array([0, -1, 2, 3])},
            r"y: labels must be in 0\.\.9",
        ),
        (
            {"x": np.zeros((4, 1, 8, 8), np.float32), "y": np.zeros(4)},
            r"y: labels must be integers",
        ),
        (
            {"x": np.zeros((4, 1, 8, 8), np.float32), "y": np.zeros((4, 1), np.int64)},
            r"y: must be 1-D",
        ),
        (
            {"x": np.zeros((4, 1, 8, 8), np.float32), "calib_x": np.zeros((2, 8, 8), np.float32)},
            r"calib_x: sample shape \(8, 8\)",
        ),
        (
            {"x": np.full((2, 1, 8, 8), np.nan, np.float32)},
            r"d\.npz: x: contains 128 NaN and 0 infinite",
        ),
        ({"inputs": np.zeros((4, 1, 8, 8), np.float32)}, r"d\.npz: no field 'x' \(found: inputs\)"),
        ({"x": np.zeros((0, 1, 8, 8), np.float32)}, r"x: must have at least one sample"),
    ],
)
def test_validation_errors(tmp_path, handle, arrays, match):
    with pytest.raises(DataError, match=match):
        load_data(_npz(tmp_path, **arrays), handle)


def test_labels_checked_against_model_output_when_classes_unknown(tmp_path):
    h = load_model("sample:digits_cnn")
    h.num_classes = None  # inferred from one forward pass: [1, 10]
    path = _npz(tmp_path, x=np.zeros((2, 1, 8, 8), np.float32), y=np.array([3, 11]))
    with pytest.raises(DataError, match="model has 10 classes"):
        load_data(path, h)


def test_bad_files(tmp_path, handle):
    with pytest.raises(DataError, match=r"missing\.npz: no such file"):
        load_data(str(tmp_path / "missing.npz"), handle)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"junk\.npz: corrupt or truncated zip"):
        load_data(str(junk), handle)
    pickled = tmp_path / "obj.pt"
    torch.save({"x": torch.zeros(2, 1, 8, 8), "meta": EvalData}, str(pickled))
    with pytest.raises(DataError, match=r"obj\.pt: holds pickled Python objects"):
        load_data(str(pickled), handle)
    with pytest.raises(DataError, match="no default data"):
        load_data(None, None)
