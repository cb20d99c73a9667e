"""Models, data and baselines as arrays for Ray's object store, and back (no Ray needed)."""

from __future__ import annotations

import pickle

import numpy as np
import torch
from torch import nn

from quantviz.data import EvalData
from quantviz.eval import compute_baseline, run
from quantviz.eval.transport import PackedTensor, pack, pack_module, unpack, unpack_module
from quantviz.model.handle import ModelHandle
from quantviz.model.layers import discover_layers


class Tied(nn.Module):
    """An embedding and an output layer sharing one weight, a BatchNorm (persistent
    buffers) and a non-persistent buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.norm = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, 50, bias=False)
        self.out.weight = self.emb.weight
        self.register_buffer("scale", torch.tensor(0.5), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids).mean(1)
        return self.out(self.norm(h) * self.scale)


def _read_only(obj):
    """What a Ray worker gets: the pickled payload, arrays in read-only memory."""
    out = pickle.loads(pickle.dumps(obj, protocol=5))

    def freeze(x):
        if isinstance(x, PackedTensor):
            x.data.setflags(write=False)
        elif isinstance(x, dict):
            for v in x.values():
                freeze(v)

    freeze(out)
    return out


def test_module_round_trip_keeps_ties_buffers_and_outputs():
    torch.manual_seed(0)
    m = Tied().eval()
    with torch.no_grad():
        m.norm.running_mean.uniform_(-1, 1)
        m.norm.running_var.uniform_(0.5, 2)
    ids = torch.randint(0, 50, (8, 5))
    skeleton, tensors = pack_module(m)
    assert all(p.device.type == "meta" for p in skeleton.parameters())
    assert "out.weight" not in tensors  # the shared weight travels once
    assert m.emb.weight.device.type == "cpu"  # the original is untouched
    back = unpack_module(*_read_only((skeleton, tensors)))
    assert back.out.weight is back.emb.weight
    assert float(back.scale) == 0.5
    torch.testing.assert_close(back(ids), m(ids), rtol=0, atol=0)


def test_any_dtype_travels_and_shares_the_array_memory():
    for t in (
        torch.randn(3, 4, dtype=torch.bfloat16),
        torch.arange(6, dtype=torch.int64).reshape(2, 3).t(),  # not contiguous
        torch.tensor(3.0),
        torch.zeros(0, 5),
    ):
        p = PackedTensor.of(t)
        assert p.data.dtype == np.uint8
        back = p.tensor()
        assert back.dtype == t.dtype and back.shape == t.shape and torch.equal(back, t)
    big = PackedTensor.of(torch.ones(1000))
    assert big.tensor().data_ptr() == big.data.ctypes.data  # a view, not a copy


def test_handle_data_and_baseline_round_trip_evaluate_the_same():
    torch.manual_seed(1)
    module = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 5)).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    example = torch.zeros(1, 12)
    handle = ModelHandle("mem", "mlp", module, discover_layers(module, example), example)
    x = torch.randn(40, 12)
    data = EvalData("rand", x, torch.randint(0, 5, (40,)), x[:10])
    base = run(compute_baseline(handle, data))
    h2, d2, b2 = unpack(_read_only(pack(handle, data, base)))
    assert h2.fqns == handle.fqns and h2.name == "mlp"
    assert b2.matches(h2.module, d2.x) and b2.value == base.value
    torch.testing.assert_close(h2.module(x), module(x), rtol=0, atol=0)
    assert torch.equal(d2.y, data.y) and torch.equal(d2.calib_x, data.calib_x)
