"""Model builders shared by tests (random init, built in the test: nothing is downloaded).

:func:`resnet18` is torchvision's ResNet-18 (BasicBlocks [2, 2, 2, 2], its module names:
``conv1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc``), with a ``width`` knob so
tests can run it small; torchvision itself is not a dependency.

:func:`efficientnet_lite` is an EfficientNet-Lite0-like classifier: a 3x3 stride-2 stem,
MBConv blocks (1x1 expand, depthwise 3x3 / 5x5, 1x1 project, BatchNorm, ReLU6, residual
where the shape allows, no squeeze-excitation — as in the Lite variants), a 1x1 head conv,
global pooling and a linear classifier. Its BatchNorm running statistics are measured on
random data (so activations are normalised as a trained network's are) and its affine
parameters are then drawn at random, which gives every layer its own realistic range.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from quantviz.model import ModelHandle, discover_layers

__all__ = [
    "block_stack",
    "block_stack_handle",
    "efficientnet_lite",
    "efficientnet_lite_small",
    "handle_of",
    "resnet18",
]

# (expand ratio, kernel, stride, output channels, repeats): EfficientNet-B0 / Lite0
LITE0_BLOCKS = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]


def _ch(c: int, width: float) -> int:
    return max(8, int(c * width + 4) // 8 * 8)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True):
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = _conv_bn(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, k, stride, groups=mid)
        self.project = _conv_bn(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    def __init__(self, width: float = 1.0, num_classes: int = 100, head: int = 1280) -> None:
        super().__init__()
        c = _ch(32, width)
        self.conv_stem = _conv_bn(3, c, 3, 2)
        blocks: list[nn.Module] = []
        for expand, k, stride, out, repeats in LITE0_BLOCKS:
            co = _ch(out, width)
            for r in range(repeats):
                blocks.append(MBConv(c, co, expand, k, stride if r == 0 else 1))
                c = co
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = _conv_bn(c, head, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_head(self.blocks(self.conv_stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def efficientnet_lite(
    *,
    width: float = 1.0,
    num_classes: int = 100,
    head: int = 1280,
    size: int = 64,
    seed: int = 0,
) -> EfficientNetLite:
    """An EfficientNet-Lite0-like model in eval mode with non-trivial BatchNorm statistics.

    With ``width=1.0`` and ``num_classes=100`` it has 3.5M parameters.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    m = EfficientNetLite(width, num_classes, head)
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            fan_out = mod.out_channels * mod.kernel_size[0] * mod.kernel_size[1] // mod.groups
            nn.init.normal_(mod.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(mod, nn.Linear):
            nn.init.uniform_(
                mod.weight, -1 / math.sqrt(mod.in_features), 1 / math.sqrt(mod.in_features)
            )
            nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.BatchNorm2d):
            mod.momentum = None  # cumulative average over the measuring batches
    # measure BatchNorm statistics on random images, then give each channel its own scale
    # and shift (as training would)
    m.train()
    with torch.no_grad():
        for _ in range(4):
            m(torch.randn(16, 3, size, size, generator=g))
    m.eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                n = mod.num_features
                mod.weight.copy_(torch.empty(n).uniform_(0.3, 2.5, generator=g))
                mod.bias.copy_(torch.randn(n, generator=g) * 0.6)
    return m


def handle_of(module: nn.Module, example: torch.Tensor, name: str = "net") -> ModelHandle:
    """A :class:`ModelHandle` of an in-memory ``nn.Module`` (as ``load_model`` builds it)."""
    module.eval()
    layers = discover_layers(module, example)
    return ModelHandle("memory", name, module, layers, example)


def efficientnet_lite_small() -> EfficientNetLite:
    """The small variant the tests save to files (an importable no-argument factory for
    ``file::tests.models:efficientnet_lite_small``): width 0.5, 10 classes, 32x32 inputs."""
    return efficientnet_lite(width=0.5, num_classes=10, head=256, size=32, seed=7)


class _Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        return self.o_proj(att @ v)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(torch.relu(self.up_proj(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.self_attn = _Attention(dim)
        self.mlp = _Mlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(x)
        return x + self.mlp(x)


class BlockStack(nn.Module):
    """A decoder-shaped stack of Linear layers named as transformers names them:
    ``embed``, ``layers.{i}.self_attn.{q,k,v,o}_proj``, ``layers.{i}.mlp.{up,down}_proj``,
    ``lm_head`` (6 layers per block plus 2)."""

    def __init__(self, n_blocks: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Linear(dim, dim, bias=False)
        self.layers = nn.ModuleList(_Block(dim, hidden) for _ in range(n_blocks))
        self.lm_head = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for blk in self.layers:
            x = blk(x)
        return self.lm_head(x)


def block_stack(n_blocks: int = 40, dim: int = 64, hidden: int = 128, seed: int = 0) -> BlockStack:
    """A :class:`BlockStack` in eval mode with random weights (40 blocks: 242 layers)."""
    torch.manual_seed(seed)
    return BlockStack(n_blocks, dim, hidden).eval()


def block_stack_handle(n_blocks: int = 40, dim: int = 64, hidden: int = 128) -> ModelHandle:
    """A :class:`ModelHandle` of :func:`block_stack` (example input ``[1, 4, dim]``)."""
    return handle_of(block_stack(n_blocks, dim, hidden), torch.randn(1, 4, dim), "blocks")


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: two 3x3 conv-BN, a 1x1 conv-BN downsample when the
    shape changes, ReLU after the residual sum."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class ResNet(nn.Module):
    def __init__(self, blocks: list[int], width: int = 64, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            layer = [BasicBlock(cin, cout, 1 if i == 0 else 2)]
            layer += [BasicBlock(cout, cout) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(width: int = 64, num_classes: int = 1000, seed: int = 0) -> ResNet:
    """ResNet-18 (torchvision's layout and names) with random weights and BatchNorm
    statistics drawn at random (so folding BatchNorm changes the conv weights), eval mode."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    m = ResNet([2, 2, 2, 2], width, num_classes)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                mod.running_var.copy_(torch.empty(n).uniform_(0.5, 2.0, generator=g))
                mod.weight.copy_(torch.empty(n).uniform_(0.5, 1.5, generator=g))
                mod.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return m.eval()
