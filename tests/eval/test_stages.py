"""Each stage of evaluate() names itself when the model or the data fail there."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.data import EvalData
from quantviz.eval import evaluate, run
from quantviz.eval.results import EvalError
from quantviz.model.handle import ModelHandle
from quantviz.model.layers import discover_layers

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*:DeprecationWarning")

W8A8 = ModelConfig(default=LayerConfig(weight=QuantSpec(), activation=QuantSpec()))


def _handle(module: nn.Module, example: torch.Tensor, flavour: str = "nn") -> ModelHandle:
    module.eval()
    layers = discover_layers(module, example)
    return ModelHandle("m.pt", "m", module, layers, example, flavour=flavour)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_calibration_failure_names_the_calibrate_stage():
    h = _handle(_net(), torch.zeros(1, 4))
    data = EvalData("d.npz", torch.randn(20, 4), None, torch.randn(10, 5))  # wrong width
    with pytest.raises(EvalError) as info:
        run(evaluate(h, data, W8A8))
    e = info.value
    assert e.stage == "calibrate (float model, calibration samples 0-9 of d.npz)"
    assert "RuntimeError" in e.detail and "4" in e.detail


def test_torchscript_activation_config_is_refused_before_any_pass():
    m = torch.jit.script(_net().eval())
    h = _handle(m, torch.zeros(1, 4), flavour="torchscript")
    gen = evaluate(h, EvalData("d.npz", torch.randn(20, 4), None, torch.randn(8, 4)), W8A8)
    with pytest.raises(ValueError, match="activation quantization: .*TorchScript"):
        next(gen)
    # weights only is fine
    w8 = ModelConfig(default=LayerConfig(weight=QuantSpec()))
    r = run(evaluate(h, EvalData("d.npz", torch.randn(20, 4), None, None), w8))
    assert r.n_samples == 20


def test_sparse_data_is_refused_naming_the_field():
    h = _handle(_net(), torch.zeros(1, 4))
    data = EvalData("sp.pt", torch.randn(6, 4).to_sparse(), None, None)
    with pytest.raises(ValueError, match=r"sp.pt: x: torch.sparse_coo tensors are not supported"):
        next(evaluate(h, data, W8A8))


def test_batch_fallback_is_reused_by_later_evaluations(caplog):
    class OneAtATime(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] != 1:
                raise RuntimeError("one sample at a time")
            return self.fc(x)

    torch.manual_seed(0)
    m = OneAtATime()
    h = _handle(m, torch.zeros(1, 4))
    x = torch.randn(12, 4)
    data = EvalData("d.npz", x, None, x[:4])
    with caplog.at_level(logging.WARNING, logger="quantviz.eval"):
        r = run(evaluate(h, data, W8A8, batch_size=5))
    assert r.batch_size == 1 and r.n_samples == 12
    assert [rec.getMessage() for rec in caplog.records] == [
        "m.pt: the model refuses a batch of 5 (RuntimeError: one sample at a time) but runs "
        "on each sample alone; evaluating one sample at a time"
    ]
    # a baseline computed once carries the limit to the evaluations that reuse it
    from quantviz.eval import compute_baseline

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="quantviz.eval"):
        base = run(compute_baseline(h, data, batch_size=5))
        r2 = run(evaluate(h, data, W8A8, batch_size=5, baseline=base))
    assert base.batch_limit == 1 and r2.batch_size == 1 and len(caplog.records) == 1
    # the float outputs are the model's, sample by sample
    with torch.no_grad():
        ref = torch.cat([m(x[i : i + 1]) for i in range(12)])
    assert torch.equal(base.outputs, ref)
