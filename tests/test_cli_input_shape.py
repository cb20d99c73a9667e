"""The example input from the data or --input-shape (issue: open the models people quantize):
a TorchScript model without a sidecar, evaluated by the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from quantviz.cli import build_parser
from quantviz.data import load_model_for_data
from quantviz.model import InputShapeRequired


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture
def files(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "net.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(Net().eval()), str(path))
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((40, 3, 12, 20)).astype("f4"))
    return path, data


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "quantviz", *map(str, args)], capture_output=True, text=True
    )


def test_the_data_tells_the_input_shape(files):
    path, data = files
    with pytest.raises(InputShapeRequired, match="--input-shape"):
        load_model_for_data(str(path))
    h = load_model_for_data(str(path), str(data))
    assert tuple(h.example_input.shape) == (1, 3, 12, 20)
    assert h.example_input.dtype == torch.float32
    h2 = load_model_for_data(str(path), str(data), input_shape=(1, 3, 8, 8))
    assert tuple(h2.example_input.shape) == (1, 3, 8, 8)  # the flag wins
    p = _cli("eval", "--model", path, "--data", data, "--json", "--no-progress")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["metric"] == "top1_agreement" and doc["value"] > 0.5


def test_input_shape_flag_exists_on_every_subcommand_the_messages_name(files):
    path, _ = files
    for cmd in ("eval", "sweep", "sensitivity", "export"):
        extra = (
            ("--config", "c.json", "--format", "json", "-o", "o.json") if cmd == "export" else ()
        )
        args = build_parser().parse_args([cmd, "--model", "m", *extra, "--input-shape", "1,3,4,4"])
        assert args.input_shape == (1, 3, 4, 4)
    p = _cli("eval", "--model", path, "--no-progress")  # no data, no shape, no sidecar
    assert p.returncode == 2
    assert "--input-shape" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = _cli("eval", "--model", path, "--input-shape", "1,x")
    assert p.returncode == 2 and "--input-shape" in p.stderr
