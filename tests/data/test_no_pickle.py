"""Data files are never unpickled: whatever their name, a pickle's code does not run."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from quantviz.data import DataError, load_data


class Marker:
    """Unpickling this writes ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').close()",))


def _torch_pickle(obj: object, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _npz_with_objects(obj: object) -> bytes:
    buf = io.BytesIO()
    arr = np.empty(1, dtype=object)
    arr[0] = obj
    np.savez(buf, x=arr)
    return buf.getvalue()


KINDS = {
    "torch zip .pt": ("d.pt", lambda m: _torch_pickle({"x": Marker(m)})),
    "legacy torch .pt": ("d.pt", lambda m: _torch_pickle({"x": Marker(m)}, legacy=True)),
    "torch pickle named .npz": ("d.npz", lambda m: _torch_pickle({"x": Marker(m)})),
    "plain pickle named .npz": ("d.npz", lambda m: pickle.dumps({"x": Marker(m)})),
    "plain pickle named .safetensors": ("d.safetensors", lambda m: pickle.dumps(Marker(m))),
    "torch pickle named .safetensors": ("d.safetensors", lambda m: _torch_pickle(Marker(m))),
    "object array in .npz": ("d.npz", lambda m: _npz_with_objects(Marker(m))),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_pickles_in_data_never_run(tmp_path, kind):
    name, build = KINDS[kind]
    marker = tmp_path / "pwned"
    path = tmp_path / name
    path.write_bytes(build(marker))
    with pytest.raises(DataError) as info:
        load_data(str(path))
    assert not marker.exists(), f"{kind}: unpickled"
    assert name in str(info.value)
    # the file is genuinely hostile: a plain unpickle of it runs the marker
    data = path.read_bytes()
    if data[:2] == b"PK" and kind.startswith("object"):
        np.load(io.BytesIO(data), allow_pickle=True)["x"]
    elif data[:2] == b"PK" or kind.startswith("legacy"):
        torch.load(io.BytesIO(data), weights_only=False)
    else:
        pickle.loads(data)
    assert marker.exists(), f"{kind}: the crafted file is not hostile, the test proves nothing"
