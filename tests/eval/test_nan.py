"""NaN / inf outputs are errors naming where they first appear, never a metric.

The models are built here; the expected layer is known by construction (a ``log`` of
negative values, a reciprocal of an exact zero that only quantization produces).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.data import EvalData
from quantviz.eval import EvalResult, evaluate, run
from quantviz.eval.forward import locate_non_finite
from quantviz.eval.results import EvalError
from quantviz.model.handle import ModelHandle
from quantviz.model.layers import discover_layers

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*:DeprecationWarning")


class Log(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


class Recip(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 / x


def _handle(module: nn.Module, example: torch.Tensor, name: str = "m.pt") -> ModelHandle:
    module.eval()
    return ModelHandle(name, name, module, discover_layers(module, example), example)


def _data(x: torch.Tensor, y: torch.Tensor | None = None) -> EvalData:
    return EvalData(name="d.npz", x=x, y=y, calib_x=x[:16])


FLOAT_W = ModelConfig(default=LayerConfig(weight=None))


def test_nan_in_the_float_model_names_the_module():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), Log(), nn.Linear(8, 3))
    h = _handle(m, torch.ones(1, 4))
    x = torch.randn(64, 4)
    with pytest.raises(EvalError) as info:
        run(evaluate(h, _data(x), FLOAT_W, batch_size=32))
    e = info.value
    assert e.stage.startswith("baseline") and "samples 0-31 of d.npz" in e.stage
    assert "first appear in the output of module 1 (Log)" in e.detail
    # the count is an independent computation on the same batch
    with torch.no_grad():
        ref = m(x[:32])
    assert f"{int(torch.isnan(ref).sum())} NaN" in e.detail
    assert str(e).count("\n") == 0


def test_nan_only_after_quantization_names_the_layer_after_it():
    """Row 0 of the first weight is tiny: 2-bit per-tensor rounds it to exact zeros, the
    first layer's output channel 0 becomes 0 and the reciprocal turns it into inf."""
    torch.manual_seed(0)
    first = nn.Linear(4, 8, bias=False)
    with torch.no_grad():
        first.weight.uniform_(0.5, 1.0)
        first.weight[0] = 1e-4
    m = nn.Sequential(first, Recip(), nn.Linear(8, 3))
    h = _handle(m, torch.ones(1, 4))
    x = torch.rand(40, 4) + 0.1
    cfg = ModelConfig(
        default=LayerConfig(weight=None),
        overrides=(("0", LayerConfig(weight=QuantSpec(bits=2))),),
    )
    with torch.no_grad():  # the float model is finite on these inputs
        assert torch.isfinite(m(x)).all()
    with pytest.raises(EvalError) as info:
        run(evaluate(h, _data(x), cfg, batch_size=16))
    e = info.value
    assert e.stage.startswith("forward (quantized model)")
    assert "quantized model's output" in e.detail
    assert "first appear in the output of module 1 (Recip)" in e.detail
    # the model is float again afterwards
    with torch.no_grad():
        assert torch.isfinite(m(x)).all()


def test_non_finite_input_is_blamed_on_the_data():
    m = nn.Sequential(nn.Linear(4, 3))
    h = _handle(m, torch.ones(1, 4))
    x = torch.randn(20, 4)
    x[13, 2] = float("nan")
    with pytest.raises(EvalError, match=r"the input already does \(d.npz: sample 13\)"):
        run(evaluate(h, _data(x), FLOAT_W, batch_size=8))


def test_inf_parameter_is_listed():
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        m[2].weight[1, 1] = float("inf")
    h = _handle(m, torch.ones(1, 4))
    with pytest.raises(EvalError) as info:
        run(evaluate(h, _data(torch.rand(10, 4) + 1), FLOAT_W))
    assert "layer 2 (Linear)" in info.value.detail
    assert "non-finite parameters: 2.weight" in info.value.detail


def test_torchscript_says_it_cannot_be_observed(tmp_path):
    m = torch.jit.script(nn.Sequential(nn.Linear(4, 8), Log(), nn.Linear(8, 3)).eval())
    h = _handle(m, torch.ones(1, 4))
    h.flavour = "torchscript"
    assert locate_non_finite(h, torch.randn(4, 4)) is None
    with pytest.raises(EvalError, match="TorchScript model cannot be observed"):
        run(evaluate(h, _data(torch.randn(10, 4)), FLOAT_W))


def test_exported_program_names_the_submodule(tmp_path):
    from quantviz.model import load_model

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), Log(), nn.Linear(8, 3)).eval()
    path = tmp_path / "log.pt2"
    torch.export.save(torch.export.export(m, (torch.ones(1, 4),)), str(path))
    h = load_model(str(path))
    with pytest.raises(EvalError) as info:
        run(evaluate(h, _data(torch.randn(10, 4)), FLOAT_W))
    assert "module 1" in info.value.detail and str(path) in str(info.value)


def test_finite_models_are_unaffected():
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    h = _handle(m, torch.ones(1, 4))
    r = run(evaluate(h, _data(torch.randn(30, 4)), FLOAT_W))
    assert isinstance(r, EvalResult) and r.value == 1.0 and r.cosine == pytest.approx(1.0)
