"""Regenerate the bundled samples in ``sample_data/`` (deterministic, CPU).

Targets (``--target``, default ``all``): ``digits`` (seconds) and ``tiny_lm`` (minutes).

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
4. ``tiny_lm``: trains a byte-level BPE tokenizer (``tokenizers``, 4096 tokens) and a small
   Llama-style decoder (``transformers.LlamaForCausalLM``: 4 blocks, hidden 256, 4 heads,
   RMSNorm, SwiGLU MLP 512, untied embeddings, 4.7M parameters) on the English text of
   Python's own documentation (``pydoc_data.topics``, shipped with CPython, PSF licence),
   holding out whole topics for evaluation. Writes ``sample_data/tiny_lm/`` (``save_pretrained``
   + ``tokenizer.json``) and ``sample_data/tiny_lm_eval.npz`` (``input_ids`` [64, 128] of
   held-out text, ``calib_input_ids`` [64, 128] of training text).

Usage: ``python scripts/train_samples.py [--out sample_data] [--target all|digits|tiny_lm]``
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


def make_digits_samples(out: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # bit-reproducible regardless of the machine's core count
    torch.use_deterministic_algorithms(True)

    t0 = time.perf_counter()
    d = make_digits(out)
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
        save_file(state, str(out / f"{name}.safetensors"), metadata={"seed": str(SEED)})
        print(f"{name}: test accuracy {accuracy(model, x[te], y[te]):.4f}")
        for bits in (4, 5, 6, 8):
            pt = fake_quant_accuracy(model, x[te], y[te], bits, per_channel=False)
            pc = fake_quant_accuracy(model, x[te], y[te], bits, per_channel=True)
            print(f"  W{bits} all layers: per-tensor {pt:.4f}  per-channel {pc:.4f}")
    print(f"done in {time.perf_counter() - t0:.1f} s")


# ---------------------------------------------------------------------------------------------
# tiny_lm: a small Llama-style decoder on Python's documentation text
# ---------------------------------------------------------------------------------------------

LM_VOCAB = 4096
LM_TRAIN_LEN = 256  # training window (= max_position_embeddings)
LM_EVAL_SHAPE = (64, 128)  # held-out windows written to tiny_lm_eval.npz
LM_CALIB_SHAPE = (64, 128)  # training-text windows written to it as calib_input_ids
LM_HELDOUT_CHARS = 40_000  # whole topics are held out until they hold at least this much text
LM_STEPS = 450  # chosen from a measured ~4.5 s/step on the shared 2-core machine (see PROVENANCE)
LM_EVAL_EVERY = 50  # held-out perplexity printed every this many steps (the loss curve)
LM_BATCH = 8
LM_LR = 3e-3
EOT = "<|endoftext|>"


def lm_corpus() -> tuple[list[str], list[str], list[str]]:
    """(train texts, held-out texts, held-out topic names) from ``pydoc_data.topics``.

    Topics are sorted by name, permuted with ``numpy.random.default_rng(0)``; the first ones
    are held out until they reach ``LM_HELDOUT_CHARS`` characters, the rest are training text.
    """
    from pydoc_data.topics import topics

    names = sorted(topics)
    perm = np.random.default_rng(SEED).permutation(len(names))
    held: list[str] = []
    n_chars = 0
    for i in perm:
        if n_chars >= LM_HELDOUT_CHARS:
            break
        held.append(names[i])
        n_chars += len(topics[names[i]])
    train = [topics[n] for n in names if n not in held]
    return train, [topics[n] for n in names if n in held], held


def train_tokenizer(texts: list[str]):  # -> tokenizers.Tokenizer
    """A byte-level BPE tokenizer (GPT-2 style) with ``LM_VOCAB`` tokens, ``<|endoftext|>`` = 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=LM_VOCAB,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def token_stream(tok, texts: list[str]) -> torch.Tensor:
    """All texts tokenized and joined, each followed by ``<|endoftext|>`` (int64)."""
    eot = tok.token_to_id(EOT)
    ids: list[int] = []
    for enc in tok.encode_batch(texts):
        ids.extend(enc.ids)
        ids.append(eot)
    return torch.tensor(ids, dtype=torch.int64)


def lm_splits(train_ids: torch.Tensor, held_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(``input_ids``, ``calib_input_ids``) of ``tiny_lm_eval.npz``: the first held-out tokens
    cut into ``LM_EVAL_SHAPE`` consecutive windows, and ``LM_CALIB_SHAPE`` windows of training
    text at evenly spaced starts (calibration — GPTQ, SmoothQuant, activation ranges — never
    sees the evaluation text)."""
    n_eval, t_eval = LM_EVAL_SHAPE
    if len(held_ids) < n_eval * t_eval:
        raise SystemExit(f"held-out text too short: {len(held_ids)} tokens")
    eval_ids = held_ids[: n_eval * t_eval].reshape(n_eval, t_eval)
    n_cal, t_cal = LM_CALIB_SHAPE
    starts = np.linspace(0, len(train_ids) - t_cal, n_cal).round().astype(np.int64)
    calib_ids = torch.stack([train_ids[s : s + t_cal] for s in starts.tolist()])
    return eval_ids, calib_ids


def lm_config():  # -> transformers.LlamaConfig
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=LM_VOCAB,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=LM_TRAIN_LEN,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )


@torch.no_grad()
def lm_perplexity(model, ids: torch.Tensor) -> float:
    """exp(mean next-token cross-entropy) over every predicted position of ``ids`` [N, T]."""
    nll, n = 0.0, 0
    for i in range(0, len(ids), 16):
        x = ids[i : i + 16]
        logits = model(input_ids=x).logits[:, :-1].float()
        nll += nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
        ).item()
        n += x[:, 1:].numel()
    return float(np.exp(nll / n))


def make_tiny_lm(out: Path, steps: int = LM_STEPS) -> None:
    import math

    from transformers import LlamaForCausalLM

    t0 = time.perf_counter()
    torch.manual_seed(SEED)
    train_texts, held_texts, held_names = lm_corpus()
    tok = train_tokenizer(train_texts)
    train_ids = token_stream(tok, train_texts)
    held_ids = token_stream(tok, held_texts)
    n_eval, t_eval = LM_EVAL_SHAPE
    eval_ids, calib_ids = lm_splits(train_ids, held_ids)
    print(
        f"tiny_lm corpus: {len(train_texts)} training topics, {len(train_ids)} tokens; "
        f"held out {len(held_names)} topics ({', '.join(held_names)}), {len(held_ids)} tokens"
    )

    model = LlamaForCausalLM(lm_config())
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tiny_lm: {n_params} parameters")
    gen = torch.Generator().manual_seed(SEED)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LM_LR,
        betas=(0.9, 0.95),
    )
    warmup = steps // 20

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    span = len(train_ids) - LM_TRAIN_LEN
    for step in range(steps):
        starts = torch.randint(0, span, (LM_BATCH,), generator=gen)
        x = torch.stack([train_ids[s : s + LM_TRAIN_LEN] for s in starts.tolist()])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % LM_EVAL_EVERY == 0 or step == steps - 1:
            model.eval()
            ppl = lm_perplexity(model, eval_ids)  # no randomness: the run stays deterministic
            model.train()
            el = time.perf_counter() - t0
            print(
                f"  step {step:4d}  loss {loss.item():.3f}  held-out ppl {ppl:8.2f}  ({el:.0f} s)",
                flush=True,
            )
    model.eval()

    lm_dir = out / "tiny_lm"
    lm_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(lm_dir), safe_serialization=True)
    tok.save(str(lm_dir / "tokenizer.json"))
    np.savez_compressed(
        out / "tiny_lm_eval.npz",
        input_ids=eval_ids.numpy().astype(np.int64),
        calib_input_ids=calib_ids.numpy().astype(np.int64),
    )
    print(f"tiny_lm: held-out perplexity {lm_perplexity(model, eval_ids):.3f} on {n_eval}x{t_eval}")
    print(f"tiny_lm done in {time.perf_counter() - t0:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "sample_data")
    ap.add_argument("--target", choices=("all", "digits", "tiny_lm"), default="all")
    ap.add_argument("--lm-steps", type=int, default=LM_STEPS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.target in ("all", "digits"):
        make_digits_samples(args.out)
    if args.target in ("all", "tiny_lm"):
        torch.set_num_threads(1)  # one thread: reproducible reductions, faster on a busy machine
        torch.use_deterministic_algorithms(True)
        make_tiny_lm(args.out, args.lm_steps)


if __name__ == "__main__":
    main()
