"""The command line, in-process (main([...]) with capsys) and once as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quantviz.cli import main
from quantviz.io import load_config

ROOT = Path(__file__).resolve().parents[1]
RESULT_KEYS = {
    "metric",
    "value",
    "baseline",
    "model_bytes",
    "float_bytes",
    "compression",
    "bops",
    "layers",
    "seconds",
}


def _json(capsys):
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_eval_default_human_readable(capsys):
    assert main(["eval", "--model", "sample:digits_cnn"]) == 0
    out, _ = capsys.readouterr()
    assert "accuracy" in out and "W8 sym ch" in out and "conv1" in out
    assert "x smaller" in out


def test_eval_json_with_config(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "format: quantviz-config\nversion: 1\n"
        "default: {weight: {bits: 4, granularity: per_channel}, activation: {bits: 8, "
        "symmetric: false}}\nlayers: {fc2: {weight: null}}\n"
    )
    assert (
        main(
            [
                "eval",
                "-m",
                "sample:digits_cnn",
                "--config",
                str(cfg),
                "--json",
                "--batch-size",
                "100",
            ]
        )
        == 0
    )
    doc, err = _json(capsys)
    assert set(doc) >= RESULT_KEYS and doc["metric"] == "accuracy"
    assert doc["timings"]["calibrate"] > 0 and "eval" in err  # progress on stderr
    fc2 = next(lay for lay in doc["layers"] if lay["fqn"] == "fc2")
    assert fc2["weight_sqnr_db"] is None and fc2["scheme"].startswith("W float")


def test_sweep_json(capsys):
    assert (
        main(["sweep", "--model", "sample:digits_cnn", "--bits", "2,8", "--json", "--no-progress"])
        == 0
    )
    doc, err = _json(capsys)
    assert err == ""
    assert [p["name"] for p in doc["points"]] == ["uniform W2 sym ch", "uniform W8 sym ch"]
    assert all(set(p) >= RESULT_KEYS for p in doc["points"])
    assert doc["points"][1]["value"] > doc["points"][0]["value"]


def test_sensitivity_text_and_json(capsys):
    assert main(["sensitivity", "--model", "sample:digits_cnn", "--bits", "2"]) == 0
    out, _ = capsys.readouterr()
    assert "rank" in out and "fc1" in out
    assert main(["sensitivity", "--model", "sample:digits_cnn", "--json", "--no-progress"]) == 0
    doc, _ = _json(capsys)
    assert doc["bits"] == [4] and len(doc["layers"]) == 4 and doc["by_kl"]


@pytest.mark.parametrize("fmt, name", [("json", "out.json"), ("yaml", "out.yaml")])
def test_export_config(tmp_path, capsys, fmt, name):
    src = tmp_path / "c.json"
    src.write_text(
        json.dumps(
            {
                "format": "quantviz-config",
                "version": 1,
                "default": {"weight": {"bits": 4}, "activation": None},
                "layers": {"conv1": {"weight": {"bits": 8}}},
            }
        )
    )
    out = tmp_path / name
    assert (
        main(["export", "-m", "sample:digits_cnn", "-c", str(src), "--format", fmt, "-o", str(out)])
        == 0
    )
    cfg = load_config(out)
    assert cfg.model == "sample:digits_cnn" and cfg.resolve("conv1").weight.bits == 8
    assert cfg.resolve("fc1").weight.bits == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            [
                "export",
                "-m",
                "sample:digits_cnn",
                "-c",
                "x.json",
                "--format",
                "onnx",
                "-o",
                "a.onnx",
            ],
            "x.json",
        ),
        (["sweep", "-m", "sample:digits_cnn", "--bits", "2,x"], "--bits"),
        (["sweep", "-m", "sample:digits_cnn", "--bits", "0"], "1..16"),
        (["eval", "-m", "sample:nope"], "unknown sample"),
        (["eval", "-m", str(Path("/nonexistent/model.pt"))], "model.pt"),
        (["eval", "-m", "sample:digits_cnn", "--config", "/nonexistent/c.json"], "c.json"),
        (["eval", "-m", "sample:digits_cnn", "--data", "/nonexistent/d.npz"], "d.npz"),
        (["eval"], "--model"),
        (["eval", "-m", "sample:digits_cnn", "--bogus"], "--bogus"),
        (["eval", "-m", "sample:digits_cnn", "--batch-size", "0"], "batch-size"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quantviz: error: ")
    assert message in lines[0]


def test_bad_config_field_is_named(tmp_path, capsys):
    cfg = tmp_path / "bad.json"
    cfg.write_text(
        json.dumps({"format": "quantviz-config", "version": 1, "default": {"weight": {"bits": 0}}})
    )
    assert main(["eval", "-m", "sample:digits_cnn", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "bits" in err and "Traceback" not in err


def test_cuda_refused_where_unavailable(capsys):
    import torch

    if torch.cuda.is_available():  # pragma: no cover - no GPU here
        pytest.skip("a GPU is present")
    assert main(["eval", "-m", "sample:digits_cnn", "--device", "cuda"]) == 2
    assert "CUDA is not available on this machine" in capsys.readouterr().err


def test_debug_shows_the_exception(capsys):
    with pytest.raises(ValueError, match="unknown sample"):
        main(["eval", "-m", "sample:nope", "--debug"])


def test_help_and_version(capsys):
    assert main(["--help"]) == 0
    assert "eval" in capsys.readouterr().out
    assert main(["eval", "--help"]) == 0
    assert "--model" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert "quantviz" in capsys.readouterr().out


def test_gui_entry_without_subcommand(capsys, monkeypatch):
    """`quantviz MODEL` goes to quantviz.gui.app.run(source, data), not to a subcommand."""
    try:
        import quantviz.gui.app  # noqa: F401
    except ImportError:
        assert main(["sample:digits_cnn"]) == 2
        assert "app is not available" in capsys.readouterr().err
        return
    calls = []
    monkeypatch.setattr("quantviz.gui.app.run", lambda s, d: calls.append((s, d)) or 0)
    assert main(["sample:digits_cnn", "--data", "x.npz"]) == 0
    assert main([]) == 0
    assert calls == [("sample:digits_cnn", "x.npz"), (None, None)]


def test_subprocess_eval_json():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "quantviz", "eval", "--model", "sample:digits_cnn", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) >= RESULT_KEYS
    assert doc["metric"] == "accuracy" and doc["value"] >= 0.95
    assert {"fqn", "bytes", "weight_sqnr_db"} <= set(doc["layers"][0])


def test_eval_timings_add_up_to_seconds(tmp_path, capsys):
    import time

    cfg = tmp_path / "a8.json"
    cfg.write_text(
        json.dumps(
            {
                "format": "quantviz-config",
                "version": 1,
                "default": {"weight": {"bits": 8}, "activation": {"bits": 8}},
            }
        )
    )
    t0 = time.perf_counter()
    assert main(["eval", "-m", "sample:digits_cnn", "-c", str(cfg), "--json", "--no-progress"]) == 0
    wall = time.perf_counter() - t0
    doc, _ = _json(capsys)
    timings = doc["timings"]
    assert list(timings) == [
        "load",
        "check",
        "baseline",
        "transform",
        "calibrate",
        "quantize",
        "forward",
        "metrics",
    ]
    assert all(v >= 0 for v in timings.values()) and timings["calibrate"] > 0
    assert sum(timings.values()) == pytest.approx(doc["seconds"], rel=0.01)
    assert doc["seconds"] <= wall  # the document's time is this command's, not more


def test_eval_without_config_uses_the_one_default(capsys):
    from quantviz.core.defaults import DEFAULT_CONFIG, DEFAULT_NAME
    from quantviz.io import config_to_dict

    assert main(["eval", "-m", "sample:digits_cnn", "--json", "--no-progress"]) == 0
    doc, _ = _json(capsys)
    assert doc["name"] == DEFAULT_NAME
    assert doc["config"] == config_to_dict(DEFAULT_CONFIG)
    assert {lay["scheme"] for lay in doc["layers"]} == {DEFAULT_CONFIG.default.short()}
