"""Regenerate the bundled samples in ``sample_data/`` (deterministic, a few seconds on CPU).

1. Reads the 8x8 handwritten digits CSV shipped inside the installed scikit-learn wheel
   (``sklearn/datasets/data/digits.csv.gz``; only this script needs scikit-learn) and writes
   ``sample_data/digits.npz``: ``x`` float32 [1797, 1, 8, 8] in [0, 1], ``y`` int64, and fixed
   ``train_idx`` / ``calib_idx`` / ``test_idx`` splits.
2. Trains ``digits_cnn`` and ``digits_mobilenet`` (architectures in
   ``quantviz/model/samples.py``), folds BatchNorm into the MobileNet's convolutions and
   writes ``sample_data/<name>.safetensors``.
3. Prints test accuracies, and for both models the accuracy with all weights fake-quantized
   per-tensor vs per-channel (symmetric, min/max) at 4, 5, 6 and 8 bits using torch's own
   ``fake_quantize_per_{tensor,channel}_affine``.

Usage: ``python scripts/train_samples.py [--out sample_data]``
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quantviz.model.samples import DigitsCNN, DigitsMobileNet  # noqa: E402

SEED = 0
N_TEST = 360
N_CALIB = 256


def digits_csv() -> Path:
    """The digits CSV inside the installed scikit-learn package."""
    import sklearn  # only this script needs scikit-learn

    return Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"


def make_digits(out: Path) -> dict[str, np.ndarray]:
    """Convert the CSV to ``digits.npz`` with fixed splits; returns the arrays."""
    with gzip.open(digits_csv(), "rt") as fh:
        raw = np.loadtxt(fh, delimiter=",", dtype=np.float64)
    x = (raw[:, :64] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = raw[:, 64].astype(np.int64)
    perm = np.random.default_rng(SEED).permutation(len(x))
    arrays = {
        "x": x,
        "y": y,
        "test_idx": np.sort(perm[:N_TEST]).astype(np.int64),
        "calib_idx": np.sort(perm[N_TEST : N_TEST + N_CALIB]).astype(np.int64),
        "train_idx": np.sort(perm[N_TEST + N_CALIB :]).astype(np.int64),
    }
    np.savez_compressed(out / "digits.npz", **arrays)
    return arrays


class MobileNetBN(nn.Module):
    """DigitsMobileNet with a BatchNorm after every conv (training form)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = DigitsMobileNet()
        self.bns = nn.ModuleDict(
            {n: nn.BatchNorm2d(getattr(self.net, n).out_channels) for n in DigitsMobileNet.CONVS}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in DigitsMobileNet.CONVS:
            x = torch.relu(self.bns[name](getattr(self.net, name)(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.net.fc(x)

    def folded(self) -> DigitsMobileNet:
        """A DigitsMobileNet computing the same function with BatchNorm folded in."""
        out = DigitsMobileNet()
        out.load_state_dict(self.net.state_dict())
        with torch.no_grad():
            for name in DigitsMobileNet.CONVS:
                conv, bn = getattr(out, name), self.bns[name]
                s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                conv.weight.mul_(s.reshape(-1, 1, 1, 1))
                conv.bias.copy_((conv.bias - bn.running_mean) * s + bn.bias)
        return out.eval()


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts by up to one pixel (zero padded)."""
    pad = nn.functional.pad(x, (1, 1, 1, 1))
    dx, dy = torch.randint(0, 3, (2,), generator=gen).tolist()
    return pad[:, :, dy : dy + 8, dx : dx + 8]


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> None:
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * ((len(x) + 63) // 64)
    )
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            loss = nn.functional.cross_entropy(model(augment(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


@torch.no_grad()
def fake_quant_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, bits: int, per_channel: bool
) -> float:
    """Accuracy with every conv/linear weight fake-quantized (symmetric min/max, torch ops)."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    saved = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            w = mod.weight
            saved[name] = w.detach().clone()
            if per_channel:
                amax = w.abs().reshape(w.shape[0], -1).amax(1)
                scale = (amax / ((qmax - qmin) / 2)).clamp_min(1e-12)
                zp = torch.zeros(w.shape[0], dtype=torch.int32)
                w.copy_(torch.fake_quantize_per_channel_affine(w, scale, zp, 0, qmin, qmax))
            else:
                scale = max(w.abs().max().item() / ((qmax - qmin) / 2), 1e-12)
                w.copy_(torch.fake_quantize_per_tensor_affine(w, scale, 0, qmin, qmax))
    acc = accuracy(model, x, y)
    for name, mod in model.named_modules():
        if name in saved:
            mod.weight.copy_(saved[name])
    return acc


def main() -> None:
    from safetensors.torch import save_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "sample_data")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # bit-reproducible regardless of the machine's core count
    torch.use_deterministic_algorithms(True)

    t0 = time.perf_counter()
    d = make_digits(args.out)
    x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"])
    tr, te = torch.from_numpy(d["train_idx"]), torch.from_numpy(d["test_idx"])
    print(
        f"digits.npz: {len(x)} images, train {len(tr)}, calib {len(d['calib_idx'])}, test {len(te)}"
    )

    torch.manual_seed(SEED)
    cnn = DigitsCNN()
    train(cnn, x[tr], y[tr], epochs=30, lr=3e-3)

    torch.manual_seed(SEED)
    mbn = MobileNetBN()
    train(mbn, x[tr], y[tr], epochs=60, lr=1e-2)
    mobilenet = mbn.folded()
    gap = (mobilenet(x[te]) - mbn(x[te])).abs().max().item()
    print(f"BatchNorm folding: max |logit difference| = {gap:.2e}")

    for lay in DigitsMobileNet.CONVS:
        amax = getattr(mobilenet, lay).weight.detach().abs().flatten(1).amax(1)
        lo, hi = amax.min().item(), amax.max().item()
        print(f"  digits_mobilenet.{lay}: per-channel max |w| spans {lo:.3g}..{hi:.3g}")
    for name, model in (("digits_cnn", cnn), ("digits_mobilenet", mobilenet)):
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(args.out / f"{name}.safetensors"), metadata={"seed": str(SEED)})
        print(f"{name}: test accuracy {accuracy(model, x[te], y[te]):.4f}")
        for bits in (4, 5, 6, 8):
            pt = fake_quant_accuracy(model, x[te], y[te], bits, per_channel=False)
            pc = fake_quant_accuracy(model, x[te], y[te], bits, per_channel=True)
            print(f"  W{bits} all layers: per-tensor {pt:.4f}  per-channel {pc:.4f}")
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
