"""Bad models and data through the real command line: one line, exit 2, file and stage named.

Every model is built here (TorchScript / torch.export of small modules) and run by
``main([...])`` in-process or ``python -m quantviz`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from quantviz.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*:DeprecationWarning")


def _one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("quantviz: error: ") and "Traceback" not in err
    return lines[0]


def _data(tmp_path: Path, x: np.ndarray, y: np.ndarray | None = None, name="d.npz") -> Path:
    p = tmp_path / name
    arrays = {"x": x} if y is None else {"x": x, "y": y}
    np.savez(p, **arrays)
    return p


def _script(tmp_path: Path, module: nn.Module, name: str, sidecar: dict) -> Path:
    p = tmp_path / name
    torch.jit.save(torch.jit.script(module.eval()), str(p))
    (tmp_path / f"{name}.json").write_text(json.dumps(sidecar))
    return p


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class OneAtATime(Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1:
            raise RuntimeError("this model takes one sample at a time")
        return self.fc2(torch.relu(self.fc1(x)))


class NoClasses(Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))[:, :0]


class Picky(Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.max() > 100):
            raise ValueError("inputs above 100 are not supported")
        return self.fc2(torch.relu(self.fc1(x)))


class FailsQuantized(Net):
    """Raises when fc1's 32 weights take fewer than 8 distinct values: never for random
    float weights, always on a 2-bit grid (at most 4 levels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc1.weight.flatten().sort()[0]
        if int((w[1:] != w[:-1]).sum()) + 1 < 8:
            raise RuntimeError("fc1 weights are not what this model expects")
        return self.fc2(torch.relu(self.fc1(x)))


class Embedder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(10, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.emb(x).mean(1))


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    return rng.standard_normal((150, 4)).astype(np.float32), rng.integers(0, 3, 150)


def _float_accuracy(module: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        pred = module.eval()(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean())


def test_pt2_exported_with_batch_1_runs_one_sample_at_a_time(tmp_path, capsys, xy):
    """Decision: a model refusing batches > 1 is evaluated one sample at a time, with one
    warning line naming the file; the numbers are those of the model on every sample."""
    x, y = xy
    path = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(Net().eval(), (torch.zeros(1, 4),)), str(path))
    data = _data(tmp_path, x, y)
    argv = ["eval", "-m", str(path), "-d", str(data), "--batch-size", "100", "--json"]
    assert main([*argv, "--no-progress"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["batch_size"] == 1 and doc["n_samples"] == 150
    assert doc["baseline"] == pytest.approx(_float_accuracy(Net(), x, y))
    (warning,) = err.strip().splitlines()
    assert warning.startswith(f"quantviz: warning: {path}: ") and "one sample at a time" in warning


def test_model_that_refuses_batches_falls_back(tmp_path, capsys, xy):
    x, y = xy
    path = _script(tmp_path, OneAtATime(), "one.pt", {"input_shape": [1, 4]})
    data = _data(tmp_path, x, y)
    assert main(["eval", "-m", str(path), "-d", str(data), "--json", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["batch_size"] == 1 and doc["baseline"] == pytest.approx(_float_accuracy(Net(), x, y))
    assert "refuses a batch of 150" in err and "one sample at a time" in err
    assert "this model takes one sample at a time" in err


def test_zero_classes(tmp_path, capsys, xy):
    path = _script(tmp_path, NoClasses(), "empty.pt", {"input_shape": [1, 4]})
    data = _data(tmp_path, xy[0])
    assert main(["eval", "-m", str(path), "-d", str(data)]) == 2
    line = _one_error_line(capsys)
    assert line == (
        f"quantviz: error: {path}: baseline (float model) (samples 0-149 of {data}): "
        "model output: shape [150, 0] has zero classes (dimension 1 is empty)"
    )


def test_embedding_fed_out_of_range_ids(tmp_path, capsys):
    ids = np.random.default_rng(1).integers(0, 10, (40, 5))
    ids[7, 2] = 15
    path = _script(tmp_path, Embedder(), "emb.pt", {"input_shape": [1, 5], "input_dtype": "int64"})
    data = _data(tmp_path, ids)
    assert main(["eval", "-m", str(path), "-d", str(data)]) == 2
    line = _one_error_line(capsys)
    assert f"{path}: baseline (float model) (samples 7-7 of {data})" in line
    assert "index out of range" in line


def test_model_raising_inside_forward(tmp_path, capsys, xy):
    x = xy[0].copy()
    x[3, 0] = 1000.0
    path = _script(tmp_path, Picky(), "picky.pt", {"input_shape": [1, 4]})
    data = _data(tmp_path, x)
    assert main(["eval", "-m", str(path), "-d", str(data)]) == 2
    line = _one_error_line(capsys)
    assert f"baseline (float model) (samples 3-3 of {data})" in line
    assert "inputs above 100 are not supported" in line


def test_model_raising_only_quantized_names_the_forward_stage(tmp_path, capsys, xy):
    path = _script(tmp_path, FailsQuantized(), "fq.pt", {"input_shape": [1, 4]})
    data = _data(tmp_path, *xy)
    cfg = tmp_path / "w2.json"
    cfg.write_text(
        json.dumps({"format": "quantviz-config", "version": 1, "default": {"weight": {"bits": 2}}})
    )
    assert main(["eval", "-m", str(path), "-d", str(data), "-c", str(cfg), "--no-progress"]) == 2
    line = _one_error_line(capsys)
    assert f"{path}: forward (quantized model) (samples 0-149 of {data})" in line
    assert "fc1 weights are not what this model expects" in line


def test_nan_model_is_an_error_naming_the_layer(tmp_path, capsys, xy):
    class Log(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(x)

    m = nn.Sequential(nn.Linear(4, 8), Log(), nn.Linear(8, 3)).eval()
    path = tmp_path / "nan.pt2"
    torch.export.save(torch.export.export(m, (torch.ones(1, 4),)), str(path))
    data = _data(tmp_path, xy[0])
    assert main(["eval", "-m", str(path), "-d", str(data), "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    line = err.strip().splitlines()[-1]  # after the batch-1 warning of this static .pt2
    assert line.startswith(f"quantviz: error: {path}: baseline (float model)")
    assert "NaN" in line and "first appear in the output of module 1" in line


def test_config_that_cannot_apply_is_refused_before_any_forward_pass(tmp_path, capsys):
    cfg = tmp_path / "g128.json"
    cfg.write_text(
        json.dumps(
            {
                "format": "quantviz-config",
                "version": 1,
                "default": {"weight": {"granularity": "per_group", "group_size": 128}},
            }
        )
    )
    # progress is on (stderr is not a terminal here: plain lines): none may appear
    assert main(["eval", "-m", "sample:digits_cnn", "-c", str(cfg)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"quantviz: error: {cfg}: config does not apply to digits_cnn")
    assert "layer conv1: weight: group_size: 128 does not divide the row length 9" in line


def test_debug_shows_the_traceback(tmp_path, xy):
    path = _script(tmp_path, NoClasses(), "empty.pt", {"input_shape": [1, 4]})
    data = _data(tmp_path, xy[0])
    from quantviz.eval.results import EvalError

    with pytest.raises(EvalError, match="zero classes"):
        main(["eval", "-m", str(path), "-d", str(data), "--debug", "--no-progress"])


def test_unexpected_exception_is_still_one_line(capsys, monkeypatch):
    import quantviz.cli.commands.eval_cmd as eval_cmd

    def broken(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(eval_cmd, "load_model_and_data", broken)
    assert main(["eval", "-m", "sample:digits_cnn"]) == 2
    line = _one_error_line(capsys)
    assert "ZeroDivisionError: division by zero" in line and "--debug" in line


# ---------------------------------------------------------------------------------------
# bad paths are reported before torch is imported
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "missing.json"], "missing.json: no such file"),
        (["--data", "missing.npz"], "missing.npz: no such file (--data)"),
        (["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
        (["-c", "missing.json", "-d", "missing.npz"], "missing.npz: no such file (--data)"),
    ],
)
def test_bad_paths_fail_without_importing_torch(tmp_path, args, message):
    code = (
        "import sys\n"
        "from quantviz.cli import main\n"
        f"rc = main(['eval', '-m', 'sample:digits_cnn', *{args!r}])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"quantviz: error: {message}"]


def test_missing_model_file_without_torch(tmp_path):
    code = (
        "import sys\n"
        "from quantviz.cli import main\n"
        "rc = main(['eval', '-m', 'nothere.pt2'])\n"
        "assert 'torch' not in sys.modules\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "quantviz: error: nothere.pt2: no such file (--model)"


# ---------------------------------------------------------------------------------------
# Ctrl-C during a long run prints what was finished
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigint_during_sensitivity_prints_partial_results(tmp_path):
    import signal

    rng = np.random.default_rng(0)
    data = _data(tmp_path, rng.standard_normal((8000, 1, 8, 8)).astype(np.float32))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "quantviz", "sensitivity", "-m", "sample:digits_cnn"]
    argv += ["-d", str(data), "--bits", "2,3,4,5,6,8", "--json"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    lines = []
    deadline = time.monotonic() + 300
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if "sensitivity: 2/24 done" in line or not line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(lines) + err
    doc = json.loads(out)
    assert doc["interrupted"] is True and 2 <= doc["completed"] < doc["total"] == 24
    # with 4 layers, the first 2 measurements are conv1 and conv2 at 2 bits
    assert [lay["fqn"] for lay in doc["layers"]][:2] == ["conv1", "conv2"] or doc["completed"] >= 4
    assert err.strip().splitlines()[-1] == "quantviz: interrupted"


def test_interrupted_sweep_prints_the_finished_points(capsys, monkeypatch):
    """Ctrl-C arriving while the third point runs (raised from the progress callback, where
    a real SIGINT lands too): the two finished points are printed, exit 130."""
    import quantviz.cli.commands.sweep_cmd as sweep_cmd
    from quantviz.cli.progress import ProgressReporter
    from quantviz.eval.results import PointDone

    class CtrlC(ProgressReporter):
        points = 0

        def __call__(self, ev):
            if isinstance(ev, PointDone):
                self.points += 1
            elif self.points == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(sweep_cmd, "reporter", lambda args, label: CtrlC(label, enabled=False))
    argv = ["sweep", "-m", "sample:digits_cnn", "--bits", "2,4,8", "--json"]
    assert main(argv) == 130
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["interrupted"] is True and (doc["completed"], doc["total"]) == (2, 3)
    assert [p["name"] for p in doc["points"]] == ["uniform W2 sym ch", "uniform W4 sym ch"]
    assert doc["points"][0]["config"]["default"]["weight"]["bits"] == 2
    assert err.strip() == "quantviz: interrupted"


def test_sweep_config_that_cannot_apply_is_refused_before_the_baseline(tmp_path, capsys):
    cfg = tmp_path / "g128.yaml"
    cfg.write_text(
        "format: quantviz-config\nversion: 1\n"
        "default: {weight: {granularity: per_group, group_size: 128}}\n"
    )
    assert main(["sweep", "-m", "sample:digits_cnn", "-c", str(cfg), "--bits", "4,8"]) == 2
    line = _one_error_line(capsys)  # no progress line: the baseline never started
    assert line.startswith(f"quantviz: error: {cfg}: config does not apply to digits_cnn")
    assert "layer conv1: weight: group_size: 128" in line
