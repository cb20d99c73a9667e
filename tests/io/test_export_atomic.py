"""Every export is atomic: a failure mid-write leaves no file (and an old file untouched)."""

from __future__ import annotations

import os
import pathlib

import pytest
from test_export_common import SAMPLES, handle_and_data

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.io import load_config
from quantviz.io.exporters import FORMATS, SUFFIXES, export

CFG = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=4, granularity="per_channel")))


def _formats():
    out = []
    for f in FORMATS:
        if f == "onnx":
            out.append(
                pytest.param(
                    f, marks=pytest.mark.skipif(not _has("onnx"), reason="onnx not installed")
                )
            )
        else:
            out.append(f)
    return out


def _has(mod: str) -> bool:
    import importlib

    try:
        importlib.import_module(mod)
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("fmt", _formats())
def test_failed_rename_leaves_no_file(tmp_path, monkeypatch, fmt):
    h, _ = handle_and_data(SAMPLES[0])
    out = tmp_path / f"out{SUFFIXES[fmt][0]}"

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("quantviz.io.atomic.os.replace", boom)
    with pytest.raises(ValueError, match="cannot write: No space"):
        export(h, CFG, fmt, out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", _formats())
def test_failure_keeps_the_previous_file(tmp_path, monkeypatch, fmt):
    h, _ = handle_and_data(SAMPLES[0])
    out = tmp_path / f"out{SUFFIXES[fmt][0]}"
    out.write_bytes(b"previous")
    monkeypatch.setattr(
        "quantviz.io.atomic.os.replace", lambda s, d: (_ for _ in ()).throw(OSError(5, "EIO"))
    )
    with pytest.raises(ValueError, match="cannot write"):
        export(h, CFG, fmt, out)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_onnx_writer_failing_mid_file(tmp_path, monkeypatch):
    onnx = pytest.importorskip("onnx")
    h, _ = handle_and_data(SAMPLES[0])

    def half_save(model, path):
        pathlib.Path(path).write_bytes(model.SerializeToString()[:100])
        raise RuntimeError("disk went away")

    monkeypatch.setattr(onnx, "save", half_save)
    with pytest.raises(RuntimeError, match="disk went away"):
        export(h, CFG, "onnx", tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_safetensors_write_failure_leaves_no_file(tmp_path, monkeypatch):
    h, _ = handle_and_data(SAMPLES[0])

    def fail(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_bytes", fail)
    with pytest.raises(ValueError, match="cannot write"):
        export(h, CFG, "safetensors", tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt, name", [("json", "c.json"), ("yaml", "c.yml")])
def test_config_formats(tmp_path, fmt, name):
    h, _ = handle_and_data(SAMPLES[1])
    res = export(h, CFG, fmt, tmp_path / name)
    cfg = load_config(res.path)
    assert cfg.model == "sample:digits_mobilenet" and cfg.default == CFG.default


def test_bad_input(tmp_path):
    h, _ = handle_and_data(SAMPLES[0])
    with pytest.raises(ValueError, match="format: must be one of"):
        export(h, CFG, "tflite", tmp_path / "m.tflite")
    with pytest.raises(ValueError, match=r"m\.bin: a onnx export needs a \.onnx"):
        export(h, CFG, "onnx", tmp_path / "m.bin")
    bad = ModelConfig(overrides=(("convX", LayerConfig()),))
    with pytest.raises(ValueError, match="convX"):
        export(h, bad, "safetensors", tmp_path / "m.safetensors")
    grp = ModelConfig(default=LayerConfig(weight=QuantSpec(granularity="per_group", group_size=7)))
    with pytest.raises(ValueError, match="layer conv1.*group_size"):
        export(h, grp, "safetensors", tmp_path / "m.safetensors")
    assert os.listdir(tmp_path) == []
