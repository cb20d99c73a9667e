"""Layer discovery (by what layers are), MACs vs hand counts, weights and hooks."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quantviz.model import load_model
from quantviz.model.layers import discover_layers

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*:DeprecationWarning")


class Conv2dStaticSamePadding(nn.Module):
    """EfficientNet-style custom conv: not an nn.Conv2d, but a conv by what it does."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.1)
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, [1, 1, 1, 1]), self.weight, self.bias)


class MyLinear(nn.Linear):
    """A subclass: recognised as linear."""


class Zoo(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.same = Conv2dStaticSamePadding(3, 8)  # [1,8,10,10] out
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)  # [1,8,5,5]
        self.grouped = nn.Conv2d(8, 8, 1, groups=2, bias=False)  # not depthwise
        self.bn = nn.BatchNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)  # [1,4,10,10]
        self.c1 = nn.Conv1d(4, 6, 3)
        self.c3 = nn.Conv3d(1, 2, (1, 2, 2))
        self.fc = MyLinear(2 * 6 * 4 * 9, 7)
        self.unused = nn.Linear(3, 3)  # never called: still listed, 0 MACs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.grouped(self.bn(self.dw(self.same(x))))  # [1,8,4,4]
        x = self.up(x)  # [1,4,8,8]
        x = self.c1(x.reshape(1, 4, 64))  # [1,6,62]
        x = self.c3(x[:, :, :50].reshape(1, 1, 6, 5, 10))  # [1,2,6,4,9]
        return self.fc(x.flatten(1))


class Tok(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids).mean(1))


X = torch.randn(1, 3, 8, 8)

HAND = {
    # out numel * (in_ch / groups) * kernel
    "same": ("conv2d", (8, 3, 3, 3), 8 * 8 * 8 * 3 * 9, False),
    "dw": ("conv2d", (8, 1, 3, 3), 8 * 4 * 4 * 1 * 9, True),
    "grouped": ("conv2d", (8, 4, 1, 1), 8 * 4 * 4 * 4 * 1, False),
    # transposed: input numel * (out_ch / groups) * kernel
    "up": ("conv_transpose2d", (8, 4, 2, 2), 8 * 4 * 4 * 4 * 4, False),
    "c1": ("conv1d", (6, 4, 3), 6 * 62 * 4 * 3, False),
    "c3": ("conv3d", (2, 1, 1, 2, 2), 2 * 6 * 4 * 9 * 1 * 4, False),
    "fc": ("linear", (7, 432), 7 * 432, False),
    "unused": ("linear", (3, 3), 0, False),
}


def _check(layers):
    by = {lay.fqn: lay for lay in layers}
    assert set(by) == set(HAND), sorted(by)
    for fqn, (kind, shape, macs, dw) in HAND.items():
        lay = by[fqn]
        assert (lay.kind, lay.weight_shape, lay.macs, lay.depthwise) == (kind, shape, macs, dw), fqn
    assert "bn" not in by
    assert by["same"].class_name == "Conv2dStaticSamePadding"
    assert by["same"].params == 8 * 27 + 8 and by["same"].bias
    assert not by["grouped"].bias and by["grouped"].params == 32


def test_eager_discovery_and_macs():
    layers = discover_layers(Zoo().eval(), X)
    _check(layers)
    assert {lay.fqn: lay.class_name for lay in layers}["fc"] == "MyLinear"


def test_torchscript_custom_named_conv(tmp_path):
    path = tmp_path / "zoo.pt"
    torch.jit.save(torch.jit.script(Zoo().eval()), str(path))
    h = load_model(str(path), input_shape=(1, 3, 8, 8))
    assert h.flavour == "torchscript"
    _check(h.layers)


def test_exported_discovery(tmp_path):
    path = tmp_path / "zoo.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(Zoo().eval(), (X,)), str(path))
    h = load_model(str(path))
    by = {lay.fqn: lay for lay in h.layers}
    # an exported graph drops modules the forward pass never calls
    assert set(by) == set(HAND) - {"unused"}
    for fqn in by:
        kind, shape, macs, dw = HAND[fqn]
        assert (by[fqn].kind, by[fqn].weight_shape, by[fqn].macs, by[fqn].depthwise) == (
            kind,
            shape,
            macs,
            dw,
        )
    assert by["same"].class_name == "Conv2dStaticSamePadding"


def test_embedding_and_integer_input(tmp_path):
    path = tmp_path / "tok.ts"
    torch.jit.save(torch.jit.script(Tok().eval()), str(path))
    h = load_model(str(path), input_shape=(1, 12), input_dtype="int64")
    by = {lay.fqn: lay for lay in h.layers}
    assert by["emb"].kind == "embedding" and by["emb"].macs == 0
    assert by["head"].kind == "linear" and by["head"].macs == 16 * 5


def _models(tmp_path):
    torch.manual_seed(0)
    ref = Zoo().eval()
    ts = tmp_path / "z.ts"
    torch.jit.save(torch.jit.script(ref), str(ts))
    ep = tmp_path / "z.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(ref, (X,)), str(ep))
    sd = tmp_path / "z.pt"
    torch.save(ref, str(sd))
    return [
        load_model(str(ts), input_shape=(1, 3, 8, 8)),
        load_model(str(ep)),
        load_model(str(sd), trust=True, input_shape=(1, 3, 8, 8)),
    ]


def test_get_weight_swap_changes_output(tmp_path):
    for h in _models(tmp_path):
        for fqn in ("same", "fc"):
            w = h.weight(fqn)
            assert w is h.weight(fqn) or w.data_ptr() == h.weight(fqn).data_ptr()
            with torch.no_grad():
                before = h.module(X).clone()
                saved = w.data
                w.data = torch.zeros_like(saved)
                changed = h.module(X).clone()
                w.data = saved
                after = h.module(X)
            assert not torch.allclose(before, changed), (h.flavour, fqn)
            torch.testing.assert_close(before, after)


def test_hooks_observe_and_replace(tmp_path):
    ts, ep, nn_h = _models(tmp_path)
    with pytest.raises(ValueError, match="TorchScript"):
        ts.add_hooks("dw", pre=lambda t: None)
    for h in (ep, nn_h):
        seen = []
        with torch.no_grad():
            ref = h.module(X).clone()
            remove = h.add_hooks(
                "dw", pre=lambda t, s=seen: s.append(t.shape), post=torch.zeros_like
            )
            zeroed = h.module(X).clone()
            remove()
            again = h.module(X)
            # replace the input of fc with zeros: output == bias
            remove = h.add_hooks("fc", pre=torch.zeros_like)
            out = h.module(X)
            remove()
        assert seen == [torch.Size([1, 8, 8, 8])], h.flavour
        assert not torch.allclose(ref, zeroed)
        torch.testing.assert_close(again, ref)
        torch.testing.assert_close(out[0], h.module.fc.bias.detach())
    with pytest.raises(KeyError, match="bn"):
        nn_h.add_hooks("bn", pre=lambda t: None)
