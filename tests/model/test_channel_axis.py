"""Which axis of a 2-D weight holds the output features, from how the forward pass uses it.

``nn.Linear`` stores ``[out, in]``; GPT-2's ``Conv1D`` (``x @ W`` with ``W`` stored
``[in, out]``) has its output features on axis 1; a weight used as the left factor
(``W @ x``) is ``[out, in]`` again. Square weights are told apart by their strides.
Property-tested over shapes with hypothesis; the expected axes are written out per module.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from quantviz.model.layers import discover_layers


class RightStored(nn.Module):
    """GPT-2's Conv1D: ``addmm(b, x, W)``, W stored [in, out]."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out))
        self.bias = nn.Parameter(torch.randn(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight)


class RightTransposed(nn.Module):
    """``x @ W.t()``, W stored [out, in] (what nn.Linear does)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.t()


class Left(nn.Module):
    """``(W @ x.t()).t()``, W stored [out, in] as the left factor."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.weight @ x.t()).t()


class Net(nn.Module):
    def __init__(self, a: int, b: int, c: int, d: int) -> None:
        super().__init__()
        self.lin = nn.Linear(a, b)
        self.conv1d = RightStored(b, c)
        self.right_t = RightTransposed(c, d)
        self.left = Left(d, a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.left(self.right_t(self.conv1d(self.lin(x))))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 24), min_size=4, max_size=4), st.integers(1, 3))
def test_output_axis_from_the_matrix_product(dims: list[int], batch: int) -> None:
    a, b, c, d = dims
    net = Net(a, b, c, d)
    layers = {lay.fqn: lay for lay in discover_layers(net, torch.randn(batch, a))}
    assert set(layers) == {"lin", "conv1d", "right_t", "left"}
    want = {"lin": (0, (b, a)), "conv1d": (1, (c, b)), "right_t": (0, (d, c)), "left": (0, (a, d))}
    for fqn, (axis, shape) in want.items():
        lay = layers[fqn]
        if fqn == "conv1d" and b == c == 1:  # [1, 1]: either axis is the one value; 0
            axis = 0
        assert (lay.channel_axis, lay.weight_shape) == (axis, shape), fqn
        w = getattr(net, fqn).weight
        assert tuple(lay.to_quant(w).shape) == shape
        assert torch.equal(lay.to_stored(lay.to_quant(w)), w)
        assert lay.macs == shape[0] * shape[1]  # per sample
