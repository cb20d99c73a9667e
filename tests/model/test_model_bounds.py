"""Model files and sidecars that claim more memory than the load limit are refused first."""

from __future__ import annotations

import collections
import io
import json
import pickle
import resource
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from pt2_tools import rewrite
from safetensors.torch import save_file

from quantviz.model import ModelLoadError, load_model
from quantviz.model.limits import LIMIT_ENV
from quantviz.model.samples import DigitsCNN

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*:DeprecationWarning")

ARCH = "quantviz.model.samples:DigitsCNN"
MiB = 1 << 20


@pytest.fixture
def scripted(tmp_path) -> Path:
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(DigitsCNN().eval()), str(path))
    return path


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_sidecar_with_a_huge_input_shape(scripted):
    sidecar = scripted.with_name("m.pt.json")
    sidecar.write_text(json.dumps({"input_shape": [1, 100_000, 100_000, 100_000]}))
    before = _maxrss_mib()
    with pytest.raises(ModelLoadError, match=r"m\.pt\.json: input_shape: .* claims 3\.6 PiB"):
        load_model(str(scripted))
    assert _maxrss_mib() - before < 256
    with pytest.raises(ModelLoadError, match=r"^input_shape: an example input .* claims"):
        load_model(str(scripted), input_shape=(1, 1 << 20, 1 << 20))


def test_sidecar_nested_deeply_or_too_big(scripted):
    sidecar = scripted.with_name("m.pt.json")
    sidecar.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelLoadError, match=r"m\.pt\.json: unreadable sidecar JSON \(nested"):
        load_model(str(scripted))
    sidecar.write_text(json.dumps({"input_shape": [1, 1, 8, 8], "pad": "x" * (2 * MiB)}))
    with pytest.raises(ModelLoadError, match=r"m\.pt\.json: sidecar JSON of 2,097,1\d\d bytes"):
        load_model(str(scripted))


def test_state_dict_zip_bomb(tmp_path, monkeypatch):
    good = tmp_path / "good.pt"
    state = {"big": torch.zeros(1 << 20)} | DigitsCNN().state_dict()  # 4 MiB of zeros
    torch.save(state, str(good))
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    assert bomb.stat().st_size < MiB
    monkeypatch.setenv(LIMIT_ENV, str(2 * MiB))
    with pytest.raises(ModelLoadError, match=r"bomb\.pt: its \d+ zip member\(s\) claims 4\.\d MiB"):
        load_model(f"{bomb}::{ARCH}", input_shape=(1, 1, 8, 8))


def test_state_dict_storage_claiming_a_terabyte(tmp_path):
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
    Pickler(buf, protocol=2).dump({"conv1.weight": Fake()})
    path = tmp_path / "tera.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/data/0", bytes(16))
        zf.writestr("archive/version", "3\n")
    with pytest.raises(ModelLoadError, match=r"tera\.pt: corrupt or truncated .*1099511627776"):
        load_model(f"{path}::{ARCH}", input_shape=(1, 1, 8, 8))


def test_pt2_archive_over_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "big.pt2"
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8192))  # 2 MiB weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, (torch.rand(1, 1, 8, 8),)), str(path))
    monkeypatch.setenv(LIMIT_ENV, str(1 * MiB))
    with pytest.raises(
        ModelLoadError, match=r"big\.pt2: the archive's \d+ entries claims 2\.\d MiB"
    ):
        load_model(str(path))
    monkeypatch.setenv(LIMIT_ENV, str(8 * MiB))
    assert len(load_model(str(path)).layers) == 1


def test_safetensors_within_limit_loads(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in DigitsCNN().state_dict().items()}, str(path))
    assert len(load_model(f"{path}::{ARCH}", input_shape=(1, 1, 8, 8)).layers) == 4


def test_special_files_are_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    with pytest.raises(ModelLoadError, match=r"pipe\.pt: not a regular file"):
        load_model(str(fifo))


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"num_classes": True}, "num_classes must be a positive integer"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"default_data": 5}, "default_data must be a data source string"),
        ({"default_data": ""}, "default_data must be a data source string"),
        ({"input_shape": "1,1,8,8"}, "input_shape: must be a list of positive integers"),
        ({"input_shape": [1, True, 8, 8]}, "input_shape: must be a list of positive integers"),
        ({"input_shape": [1, 1, 8, 8], "input_dtype": "complex128"}, "input dtype must be"),
    ],
)
def test_sidecar_fields_are_checked(scripted, doc, match):
    scripted.with_name("m.pt.json").write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError, match=r"m\.pt(\.json)?.*" + match):
        load_model(str(scripted))


def test_pt2_example_input_claiming_terabytes(tmp_path):
    """The program's stored example input is a stride-0 view claiming 4 TiB."""
    path = tmp_path / "m.pt2"
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, (torch.rand(1, 1, 8, 8),)), str(path))
    huge = io.BytesIO()
    torch.save(((torch.zeros(1, 1, 1, 1).expand(2, 1 << 38, 8, 8),), {}), huge)
    evil = tmp_path / "huge_example.pt2"
    rewrite(path, evil, {"data/sample_inputs/model.pt": lambda _: huge.getvalue()})
    with pytest.raises(ModelLoadError, match=r"huge_example\.pt2: the example input .* TiB"):
        load_model(str(evil))


def test_torchscript_zip_bomb(tmp_path, monkeypatch):
    good = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(1024, 1024)), str(good))  # 4 MiB
    bomb = tmp_path / "bomb_ts.pt"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    monkeypatch.setenv(LIMIT_ENV, str(2 * MiB))
    with pytest.raises(
        ModelLoadError, match=r"bomb_ts\.pt: its \d+ zip member\(s\) claims 4\.\d MiB"
    ):
        load_model(str(bomb), input_shape=(1, 1024))
    monkeypatch.setenv(LIMIT_ENV, str(64 * MiB))  # torch reads deflated members: it loads
    assert len(load_model(str(bomb), input_shape=(1, 1024)).layers) == 1
