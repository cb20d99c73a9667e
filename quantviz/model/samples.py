"""The bundled sample models (architectures + where their weights live).

Weights are ``safetensors`` files in ``sample_data/`` (made by ``scripts/train_samples.py``);
the digits architectures are defined here, so loading a sample never unpickles anything.
``tiny_lm`` is a Hugging Face ``save_pretrained`` folder (``sample_data/tiny_lm/``: a small
Llama-style decoder, its ``config.json``, ``model.safetensors`` and ``tokenizer.json``),
opened by :func:`load_pretrained_lm` (``transformers``, the ``hf`` extra, strictly offline).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "SAMPLES",
    "SAMPLE_DATA_ENV",
    "DigitsCNN",
    "DigitsMobileNet",
    "SampleInfo",
    "list_samples",
    "load_pretrained_lm",
    "sample_data_dir",
    "sample_dir",
    "sample_path",
]

#: Environment variable overriding where ``sample_data/`` is looked up.
SAMPLE_DATA_ENV = "QUANTVIZ_SAMPLE_DATA"


def sample_data_dir() -> Path:
    """The directory holding the bundled sample files.

    ``$QUANTVIZ_SAMPLE_DATA`` if set; else ``sample_data/`` beside the ``quantviz`` package
    (the repository layout), else ``quantviz/sample_data`` inside the package.
    """
    env = os.environ.get(SAMPLE_DATA_ENV)
    if env:
        return Path(env).expanduser()
    pkg = Path(__file__).resolve().parent.parent  # .../quantviz
    for cand in (pkg.parent / "sample_data", pkg / "sample_data"):
        if cand.is_dir():
            return cand
    return pkg.parent / "sample_data"


def sample_path(filename: str) -> Path:
    """Path of one bundled file; ``FileNotFoundError`` naming the directory if missing."""
    path = sample_data_dir() / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"bundled sample file {filename!r} not found in {path.parent} "
            f"(set {SAMPLE_DATA_ENV} to the sample_data directory, or run "
            "scripts/train_samples.py to regenerate it)"
        )
    return path


def sample_dir(dirname: str) -> Path:
    """Path of one bundled folder; ``FileNotFoundError`` naming the directory if missing."""
    path = sample_data_dir() / dirname
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"bundled sample folder {dirname!r} (with config.json) not found in {path.parent} "
            f"(set {SAMPLE_DATA_ENV} to the sample_data directory, or run "
            "scripts/train_samples.py --target tiny_lm to regenerate it)"
        )
    return path


def load_pretrained_lm(folder: Path) -> nn.Module:
    """A ``save_pretrained`` causal-LM folder opened with ``transformers`` (offline, float32).

    One small function on purpose: the Hugging Face folder loader replaces it.
    """
    try:
        from transformers import AutoModelForCausalLM
    except ImportError as exc:
        raise ValueError(
            f"{folder}: opening a Hugging Face model needs transformers "
            f"(pip install 'quantviz[hf]'): {exc}"
        ) from None
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar on the CLI's stderr
    try:
        return AutoModelForCausalLM.from_pretrained(  # type: ignore[no-any-return]
            str(folder), local_files_only=True, dtype=torch.float32
        )
    finally:
        if shown:
            hf_logging.enable_progress_bar()


class DigitsCNN(nn.Module):
    """A small CNN for the 8x8 digits: two 3x3 convs, a 2x2 max-pool, two linear layers."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, num_classes)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.pool(self.act(self.conv2(x)))
        x = self.act(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class DigitsMobileNet(nn.Module):
    """A MobileNet-style depthwise-separable net for the 8x8 digits.

    Trained with BatchNorm after every conv; the shipped weights have BatchNorm folded into
    the convolutions (as deployed models do), which leaves the depthwise kernels with very
    different ranges per channel.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.dw1 = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw1 = nn.Conv2d(16, 32, 1)
        self.dw2 = nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32)
        self.pw2 = nn.Conv2d(32, 64, 1)
        self.dw3 = nn.Conv2d(64, 64, 3, padding=1, groups=64)
        self.pw3 = nn.Conv2d(64, 64, 1)
        self.fc = nn.Linear(64, num_classes)
        self.act = nn.ReLU()

    #: conv layers in forward order (the training script pairs each with a BatchNorm)
    CONVS = ("stem", "dw1", "pw1", "dw2", "pw2", "dw3", "pw3")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.CONVS:
            x = self.act(getattr(self, name)(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


@dataclass(frozen=True)
class SampleInfo:
    """One bundled sample: architecture factory and weights file (or a Hugging Face folder,
    ``hf_dir``), input shape, data."""

    name: str
    factory: type[nn.Module] | None
    weights: str
    input_shape: tuple[int, ...]
    num_classes: int | None
    default_data: str
    description: str
    #: a ``save_pretrained`` folder in sample_data/ (a causal LM), instead of factory+weights
    hf_dir: str = ""


SAMPLES: dict[str, SampleInfo] = {
    "digits_cnn": SampleInfo(
        "digits_cnn",
        DigitsCNN,
        "digits_cnn.safetensors",
        (1, 1, 8, 8),
        10,
        "sample:digits",
        "small CNN (2 conv + 2 linear) on the 8x8 handwritten digits",
    ),
    "digits_mobilenet": SampleInfo(
        "digits_mobilenet",
        DigitsMobileNet,
        "digits_mobilenet.safetensors",
        (1, 1, 8, 8),
        10,
        "sample:digits",
        "depthwise-separable (MobileNet-style, BatchNorm folded) net on the 8x8 digits",
    ),
    "tiny_lm": SampleInfo(
        "tiny_lm",
        None,
        "",
        (1, 8),
        None,
        "sample:tiny_lm",
        "Llama-style decoder (4 blocks, hidden 256, 4.7M parameters) trained on Python's "
        "documentation; perplexity on held-out topics",
        hf_dir="tiny_lm",
    ),
}


def list_samples() -> list[str]:
    """Names of the bundled samples (use as ``sample:NAME``)."""
    return sorted(SAMPLES)


def build_sample(name: str) -> tuple[SampleInfo, nn.Module]:
    """Instantiate sample ``name`` with its bundled weights (eval mode, on CPU)."""
    from safetensors.torch import load_file

    try:
        info = SAMPLES[name]
    except KeyError:
        raise ValueError(
            f"unknown sample {name!r}; available: {', '.join(list_samples())}"
        ) from None
    if info.hf_dir:
        return info, load_pretrained_lm(sample_dir(info.hf_dir)).eval()
    assert info.factory is not None
    module = info.factory(info.num_classes)
    state = load_file(str(sample_path(info.weights)))
    module.load_state_dict(state)
    return info, module.eval()
