"""torchvision architectures by name: ``weights.pth::torchvision.models:resnet18`` (issue 10).

torchvision does not import beside the project's pinned CPU torch 2.13.0, so these tests run
in CI's separate vision environment (``.ci/run``, stage 4: torch 2.14.1 + torchvision 0.29.1)
and skip elsewhere. Models are built with ``weights=None`` (random init); nothing downloads.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

torchvision = pytest.importorskip("torchvision")

from quantviz.core import LayerConfig, ModelConfig, QuantSpec  # noqa: E402
from quantviz.eval.apply import apply_config  # noqa: E402
from quantviz.model import load_model  # noqa: E402

X = torch.rand(2, 3, 64, 64)


def _fake_quant_per_channel(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric restricted-range per-output-channel fake-quant, written here in plain torch."""
    qmax = 2 ** (bits - 1) - 1
    amax = w.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-12)
    scale = (amax / qmax).view(-1, *([1] * (w.dim() - 1)))
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale


def _build(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():  # random BN statistics, so folding and quantization see real ranges
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize(
    ("name", "fmt", "n_layers"),
    [("resnet18", "pth", 21), ("mobilenet_v3_small", "safetensors", 54)],
)
def test_torchvision_by_name(tmp_path, name, fmt, n_layers):
    ref = _build(name)
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "pth":
        torch.save(ref.state_dict(), path)
    else:
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    h = load_model(f"{path}::torchvision.models:{name}", input_shape=(1, 3, 64, 64))
    convs_and_linears = [n for n, m in ref.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert h.fqns == convs_and_linears and len(h.fqns) == n_layers
    with torch.no_grad():
        torch.testing.assert_close(h.module(X), ref(X))

        # W8 per-channel (symmetric, restricted range) vs the same fake-quant done here
        spec = QuantSpec(bits=8, granularity="per_channel", symmetric=True, restricted_range=True)
        expected = _build(name)
        expected.load_state_dict(ref.state_dict())
        for fqn in convs_and_linears:
            mod = expected.get_submodule(fqn)
            mod.weight.copy_(_fake_quant_per_channel(mod.weight, 8))
        with apply_config(h, ModelConfig(default=LayerConfig(weight=spec))):
            got = h.module(X)
        torch.testing.assert_close(got, expected(X), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(h.module(X), ref(X))  # the float weights are back
