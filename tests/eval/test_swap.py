"""The one parameter swap (eval/apply.py ``swapped_parameters``) that ``apply_config`` and
``qat.swapped_weights`` share: the very same storage back on exit, also on an exception;
tied parameters (separate objects sharing a weight) swapped together; nothing changed when
``swapped_weights`` refuses its input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantviz.eval.apply import swapped_parameters
from quantviz.eval.qat import swapped_weights
from quantviz.model.handle import LayerInfo, ModelHandle


def _handle() -> ModelHandle:
    torch.manual_seed(0)
    mod = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 4, bias=False))
    # a tied pair of separate Parameter objects on one storage (as some checkpoints tie)
    mod.add_module("head", nn.Linear(4, 3, bias=False))
    mod.head.weight = nn.Parameter(mod[0].weight.data)
    layers = [
        LayerInfo("0", "linear", (3, 4), 12, class_name="Linear", tied=("head.weight",)),
        LayerInfo("1", "linear", (4, 3), 12, class_name="Linear"),
    ]
    return ModelHandle("toy", "toy", mod, layers, torch.zeros(1, 4))


def _storage(h: ModelHandle) -> dict[str, tuple[int, torch.Tensor]]:
    return {
        n: (p.data_ptr(), p.detach().clone())
        for n, p in h.module.named_parameters(remove_duplicate=False)
    }


def _same(h: ModelHandle, snap: dict[str, tuple[int, torch.Tensor]]) -> None:
    for n, p in h.module.named_parameters(remove_duplicate=False):
        ptr, val = snap[n]
        assert p.data_ptr() == ptr and torch.equal(p.detach(), val), n


def test_put_layer_swaps_tied_parameters_and_restores_on_an_exception():
    h = _handle()
    snap = _storage(h)
    new = torch.full((3, 4), 0.5)
    with pytest.raises(RuntimeError, match="boom"), swapped_parameters() as swap:
        swap.put_layer(h, "0", new)
        assert torch.equal(h.module[0].weight, new) and torch.equal(h.module.head.weight, new)
        x = torch.ones(1, 4)
        # independent: the forward pass a plain Linear with that weight computes
        ref = x @ new.t() + h.module[0].bias
        assert torch.allclose(h.module[0](x), ref)
        raise RuntimeError("boom")
    _same(h, snap)


def test_swapped_weights_checks_everything_before_changing_anything():
    h = _handle()
    snap = _storage(h)
    good = torch.zeros(3, 4)
    bad = {"0.weight": good, "1.weight": torch.zeros(3, 4)}
    with (
        pytest.raises(ValueError, match=r"1\.weight: shape \(3, 4\) does not fit"),
        swapped_weights(h, bad),
    ):
        pass  # pragma: no cover
    _same(h, snap)
    with (
        pytest.raises(ValueError, match="no parameter named nope"),
        swapped_weights(h, {"0.weight": good, "nope": good}),
    ):
        pass  # pragma: no cover
    _same(h, snap)
    with swapped_weights(h, {"0.weight": good, "head.weight": good}):
        assert torch.equal(h.module[0].weight, good) and torch.equal(h.module.head.weight, good)
        assert h.module[0].weight.dtype == torch.float32
    _same(h, snap)


def test_apply_config_quantizes_and_restores_a_tied_pair():
    from quantviz.core import LayerConfig, ModelConfig, QuantSpec
    from quantviz.eval import apply_config

    h = _handle()
    snap = _storage(h)
    w = h.module[0].weight.detach().clone()
    # independent: torch's 4-bit symmetric per-tensor fake-quant with the min/max scale
    scale = float(w.abs().max()) / 7.5
    ref = torch.fake_quantize_per_tensor_affine(w, scale, 0, -8, 7)
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=4, granularity="per_tensor")))
    with apply_config(h, cfg):
        assert torch.allclose(h.module[0].weight, ref, atol=1e-6)
        assert h.module.head.weight.data_ptr() == h.module[0].weight.data_ptr()
    _same(h, snap)
