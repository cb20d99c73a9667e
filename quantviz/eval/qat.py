"""Quantization-aware fine-tuning (QAT) with the straight-through estimator.

The survey's recipe (Gholami et al. 2021, section 4.2): the forward pass sees fake-quantized
weights (and activations), the backward pass treats rounding as the identity (STE), and the
float "latent" weights are updated by the optimizer. Three ways to set the grid:

- ``ste``: the grid is re-fitted by quantviz's own quantizer on every step (any quantizer,
  any granularity). The tuned latent weights under the same configuration give exactly the
  training forward pass, so ``evaluate`` of the result is what was trained.
- ``lsq``: learned step size (Esser et al. 2020, LSQ): one learnable scale per row of the
  spec's granularity, initialised from quantviz's fitted scale, its gradient scaled by
  ``1 / sqrt(row_len * qmax)``. Uniform quantizers only.
- ``pact``: learned clipping (Choi et al. 2018, PACT): one learnable clipping value ``alpha``
  per row; the weight is clipped to ``[-alpha, alpha]`` and quantized symmetrically on that
  range (the clip passes its gradient to ``alpha``). Uniform symmetric quantizers only.

For ``lsq`` and ``pact`` the kept weights are the latent ones clipped to the learned range, so
that the min/max grid quantviz (and every export) fits to them is the learned grid wherever a
row reaches its range. The reported ``value`` is ``evaluate`` of the kept weights under the
configuration: what an export deploys, not the training forward pass.

Activations with a quantization spec are fake-quantized with per-batch (dynamic) ranges during
training, with the STE; static ranges are calibrated again on the fine-tuned model when it is
evaluated.

The training data is the data's training split (``train_x`` / ``train_y``: the bundled
``sample:digits`` has one; a ``.npz`` may carry them); with labels the loss is the
cross-entropy, without labels (or with only calibration inputs) it is distillation: the KL
divergence of the fine-tuned model's output distribution to the float model's. The
evaluation split is never trained on.

The loaded model is never modified: training runs on a copy, and ``weights`` in the result
are new tensors (param name -> tensor). :func:`finetune` is a generator: it yields
:class:`~quantviz.eval.results.Progress` per step (monotone) and stops cleanly when the
consumer stops iterating (cancel).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from quantviz.core import ModelConfig, QuantSpec, fake_quantize, quantize
from quantviz.eval.apply import WeightCache, check_config, swapped_parameters
from quantviz.eval.results import Progress, relay_progress

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.eval.results import EvalResult
    from quantviz.model.handle import ModelHandle

__all__ = ["QAT_METHODS", "QatOptions", "QatResult", "finetune", "swapped_weights"]

QAT_METHODS: tuple[str, ...] = ("ste", "lsq", "pact")


@dataclass(frozen=True)
class QatOptions:
    """How to fine-tune; every invalid value raises ``ValueError`` naming the field."""

    epochs: int = 3
    method: str = "ste"
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int):
            raise ValueError(f"epochs: must be an integer, got {self.epochs!r}")
        if not 1 <= self.epochs <= 1000:
            raise ValueError(f"epochs: must be 1..1000, got {self.epochs}")
        if self.method not in QAT_METHODS:
            raise ValueError(
                f"method: must be one of {', '.join(QAT_METHODS)}; got {self.method!r}"
            )
        if not isinstance(self.lr, (int, float)) or not 0 < float(self.lr) <= 1:
            raise ValueError(f"lr: must be in (0, 1], got {self.lr!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise ValueError(f"batch_size: must be an integer, got {self.batch_size!r}")
        if not 1 <= self.batch_size <= 65536:
            raise ValueError(f"batch_size: must be 1..65536, got {self.batch_size}")


@dataclass
class QatResult:
    """Before and after fine-tuning, and the fine-tuned weights (param name -> tensor)."""

    before: EvalResult
    after: EvalResult
    weights: dict[str, torch.Tensor]
    options: QatOptions
    steps: int
    distilled: bool
    train_samples: int
    #: per epoch: {"epoch", "loss"} (mean training loss)
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.after.metric,
            "baseline": self.after.baseline,
            "before": self.before.value,
            "value": self.after.value,
            "method": self.options.method,
            "epochs": self.options.epochs,
            "steps": self.steps,
            "lr": self.options.lr,
            "batch_size": self.options.batch_size,
            "loss": "kl_to_float" if self.distilled else "cross_entropy",
            "train_samples": self.train_samples,
            "history": self.history,
            "model_bytes": self.after.model_bytes,
            "float_bytes": self.after.float_bytes,
        }


# --------------------------------------------------------------------------- fake quant


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """``x`` in the forward pass, gradient times ``g`` in the backward pass (LSQ)."""
    return (x - x * g).detach() + x * g


class _SteWeight(nn.Module):
    """Re-fit the grid with quantviz's quantizer each step; identity gradient."""

    def __init__(self, spec: QuantSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        q = fake_quantize(w.detach(), self.spec).to(w.dtype)
        return w + (q - w).detach()


def _row_shape(w: torch.Tensor, spec: QuantSpec) -> tuple[Callable[..., Any], Any, int]:
    from quantviz.core.quantizers.base import row_view

    rv = row_view(tuple(w.shape), spec)
    return rv.to_rows, rv.from_rows, rv.row_len


class _LsqWeight(nn.Module):
    """LSQ: learnable per-row scale, zero point fixed at its fitted value."""

    def __init__(self, w: torch.Tensor, spec: QuantSpec) -> None:
        super().__init__()
        res = quantize(w.detach(), spec)
        fitted = res.fitted
        scale = getattr(fitted, "scale", None)
        zp = getattr(fitted, "zero_point", None)
        if scale is None or zp is None:
            raise ValueError(f"quantizer: lsq learns a uniform grid's scale, not {spec.quantizer}")
        self.spec = spec
        self.to_rows, self.from_rows, row_len = _row_shape(w, spec)
        self.scale = nn.Parameter(scale.detach().clone().float())
        self.zp: torch.Tensor
        self.register_buffer("zp", zp.detach().clone().float())
        qmin, qmax = spec.qrange
        self.qmin, self.qmax = float(qmin), float(qmax)
        self.g = 1.0 / math.sqrt(row_len * max(abs(qmax), 1))

    def keep(self, w: torch.Tensor) -> torch.Tensor:
        """The latent weight clipped to the learned range: quantviz's min/max re-fit of it
        finds the learned scale and zero point again (where a row reaches its range)."""
        rows = self.to_rows(w)
        s = self.scale.abs().clamp_min(1e-12)[:, None]
        zp = self.zp[:, None]
        if self.spec.symmetric:
            half = (self.qmax - self.qmin) / 2.0
            lo, hi = -s * half, s * half
        else:
            lo, hi = (self.qmin - zp) * s, (self.qmax - zp) * s
        return self.from_rows(torch.minimum(torch.maximum(rows, lo), hi)).to(w.dtype)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        rows = self.to_rows(w)
        s = _grad_scale(self.scale.abs().clamp_min(1e-12), self.g)[:, None]
        zp = self.zp[:, None]
        q = torch.clamp(_round_ste(rows / s) + zp, self.qmin, self.qmax)
        return self.from_rows((q - zp) * s).to(w.dtype)


class _PactWeight(nn.Module):
    """PACT for weights: learnable symmetric clipping value per row."""

    def __init__(self, w: torch.Tensor, spec: QuantSpec) -> None:
        super().__init__()
        if not spec.symmetric:
            raise ValueError("symmetric: pact learns a symmetric clipping range; use lsq or ste")
        self.spec = spec
        self.to_rows, self.from_rows, _ = _row_shape(w, spec)
        rows = self.to_rows(w.detach())
        self.alpha = nn.Parameter(rows.abs().amax(dim=1).clamp_min(1e-8).clone())
        qmin, qmax = spec.qrange
        self.qmin, self.qmax = float(qmin), float(qmax)
        self.half_span = (qmax - qmin) / 2.0  # quantviz's symmetric scale: range / half-width

    def keep(self, w: torch.Tensor) -> torch.Tensor:
        """The latent weight clipped to ``[-alpha, alpha]`` (re-fits to the learned grid)."""
        rows = self.to_rows(w)
        a = self.alpha.abs().clamp_min(1e-8)[:, None]
        return self.from_rows(torch.minimum(torch.maximum(rows, -a), a)).to(w.dtype)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        rows = self.to_rows(w)
        a = self.alpha.abs().clamp_min(1e-8)[:, None]
        clipped = torch.minimum(torch.maximum(rows, -a), a)
        s = a / self.half_span
        q = torch.clamp(_round_ste(clipped / s), self.qmin, self.qmax)
        return self.from_rows(q * s).to(w.dtype)


class _Transposed(nn.Module):
    """A weight stored ``[in, out]`` (GPT-2's Conv1D) fake-quantized as ``[out, in]``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def keep(self, w: torch.Tensor) -> torch.Tensor:
        keep = getattr(self.inner, "keep", None)
        return w.clone() if keep is None else keep(w.t()).t()  # type: ignore[no-any-return]

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.inner(w.t()).t()  # type: ignore[no-any-return]


def _weight_module(w: torch.Tensor, spec: QuantSpec, method: str, fqn: str) -> nn.Module:
    if method == "ste":
        return _SteWeight(spec)
    if not spec.is_uniform:
        raise ValueError(
            f"layer {fqn}: weight: {method} learns a uniform grid; this layer's quantizer is "
            f"{spec.quantizer} (use --method ste)"
        )
    try:
        return _LsqWeight(w, spec) if method == "lsq" else _PactWeight(w, spec)
    except ValueError as exc:
        raise ValueError(f"layer {fqn}: weight: {exc}") from None


# --------------------------------------------------------------------------- training


def _train_split(data: EvalData) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Training inputs, labels (None: distil) and whether the loss is distillation."""
    tx = getattr(data, "train_x", None)
    ty = getattr(data, "train_y", None)
    if tx is not None and ty is not None:
        return tx, ty, False
    if tx is not None:
        return tx, None, True
    return data.calib_x, None, True


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ValueError(f"qat: the model returns {type(out).__name__}; expected a tensor of logits")


def _kl_to(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    t = torch.log_softmax(teacher.flatten(0, -2).float(), dim=-1)
    s = torch.log_softmax(student.flatten(0, -2).float(), dim=-1)
    return torch.nn.functional.kl_div(s, t, log_target=True, reduction="batchmean")


@contextmanager
def swapped_weights(handle: ModelHandle, weights: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Give ``handle``'s parameters the ``weights`` (param name -> tensor) inside the block.

    Every name and shape is checked before any parameter changes; the original tensors (the
    very same storage) are put back on exit, also on an exception
    (:func:`quantviz.eval.apply.swapped_parameters`). Tied parameters are listed under each
    of their names (``named_parameters(remove_duplicate=False)``), as :func:`finetune`
    returns them.
    """
    params = dict(handle.module.named_parameters(remove_duplicate=False))
    missing = sorted(set(weights) - set(params))
    if missing:
        raise ValueError(f"{handle.name}: no parameter named {', '.join(missing[:5])}")
    for name, t in weights.items():
        p = params[name]
        if tuple(t.shape) != tuple(p.shape):
            raise ValueError(
                f"{handle.name}: {name}: shape {tuple(t.shape)} does not fit the model's "
                f"{tuple(p.shape)}"
            )
    with swapped_parameters() as swap:
        for name, t in weights.items():
            p = params[name]
            swap.put(p, t.to(p.dtype))
        yield


#: the progress phases of :func:`finetune`: evaluation before, training, evaluation after
_PHASES = 3


def _phase(gen: Generator[Any, None, Any], point: int) -> Generator[Any, None, Any]:
    """Relay ``gen``, its progress events as phase ``point`` of :data:`_PHASES`."""
    return relay_progress(gen, lambda p: Progress(p.done, p.total, p.stage, point, _PHASES))


def finetune(
    handle: ModelHandle,
    data: EvalData,
    config: ModelConfig,
    options: QatOptions | None = None,
    *,
    name: str = "",
) -> Generator[Progress, None, QatResult]:
    """Fine-tune ``handle``'s model with ``config``'s quantizers in the loop; see module doc.

    Raises ``ValueError`` naming the problem (a TorchScript or exported model, a layer whose
    quantizer the method cannot learn, no training data) before any training.
    """
    from quantviz.eval.evaluate import compute_baseline, evaluate

    options = options or QatOptions()
    check_config(handle, config)
    if handle.flavour != "nn":
        raise ValueError(
            f"{handle.name}: qat trains an eager PyTorch model; this one is {handle.flavour} "
            "(open its weights with the architecture: weights.safetensors::package.module:factory)"
        )
    tx, ty, distilled = _train_split(data)
    if tx.shape[0] == 0:
        raise ValueError(f"{data.name}: no training samples")
    if ty is not None and not handle.num_classes:
        distilled, ty = True, None

    # 0. the configuration on the float weights; the float outputs are the reference for both
    # progress in three phases (before, training, after): each phase's stages start from
    # zero, so without the phase a progress bar would be full after the first evaluation
    baseline = yield from _phase(compute_baseline(handle, data), 0)
    before = yield from _phase(
        evaluate(handle, data, config, baseline=baseline, name=f"{name} (before qat)"), 0
    )

    # 1. a trainable copy with fake-quant in the forward pass
    teacher = handle.module
    student = copy.deepcopy(teacher)
    student.train(False)  # BatchNorm statistics stay as they are (fine-tune, not re-train)
    quant_mods: dict[str, nn.Module] = {}
    for lay in handle.layers:
        spec = config.resolve(lay.fqn).weight
        if spec is None or lay.param_name in quant_mods:
            continue
        owner = student.get_submodule(lay.module_fqn)
        pname = lay.param_name.rpartition(".")[2]
        w = getattr(owner, pname)
        fq = _weight_module(lay.to_quant(w), spec, options.method, lay.fqn)
        if lay.to_quant(w) is not w:  # stored [in, out]: quantized per output feature
            fq = _Transposed(fq)
        torch.nn.utils.parametrize.register_parametrization(owner, pname, fq, unsafe=True)
        quant_mods[lay.param_name] = fq
    act_hooks = _activation_hooks(handle, config, student)
    for p in student.parameters():
        p.requires_grad_(True)
    latent = [p for n, p in student.named_parameters() if "parametrizations" in n]
    others = [p for n, p in student.named_parameters() if "parametrizations" not in n]
    opt = torch.optim.Adam([{"params": latent + others, "lr": float(options.lr)}])

    gen = torch.Generator().manual_seed(options.seed)
    n = int(tx.shape[0])
    bs = min(options.batch_size, n)
    per_epoch = -(-n // bs)
    total = per_epoch * options.epochs
    history: list[dict[str, float]] = []
    step = 0
    try:
        for epoch in range(options.epochs):
            order = torch.randperm(n, generator=gen)
            losses = []
            for i in range(per_epoch):
                idx = order[i * bs : (i + 1) * bs]
                xb = tx[idx]
                with torch.enable_grad():
                    out = _logits(student(xb))
                    if distilled:
                        with torch.no_grad():
                            ref = _logits(teacher(xb))
                        loss = _kl_to(ref, out)
                    else:
                        assert ty is not None
                        loss = torch.nn.functional.cross_entropy(out.float(), ty[idx])
                    if not torch.isfinite(loss):
                        raise ValueError(
                            f"qat: the loss became {loss.item()} at step {step + 1}; "
                            f"lower the learning rate (now {options.lr})"
                        )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                losses.append(float(loss.detach()))
                step += 1
                yield Progress(step, total, "qat", 1, _PHASES)
            history.append({"epoch": float(epoch + 1), "loss": sum(losses) / len(losses)})
    finally:
        for r in act_hooks:
            r.remove()

    # 2. the weights to keep: latent (ste) or on the learned grid (lsq, pact)
    weights: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for n_, p in student.named_parameters(remove_duplicate=False):
            if "parametrizations" in n_:
                continue
            weights[n_] = p.detach().clone()
        for pname, fq in quant_mods.items():
            owner_name, _, leaf = pname.rpartition(".")
            holder: Any = student.get_submodule(owner_name)
            original = holder.parametrizations[leaf].original.detach()
            keep = getattr(fq, "keep", None)
            weights[pname] = original.clone() if keep is None else keep(original)
    del student, opt

    # 3. the configuration on the fine-tuned weights (fresh caches: new weights)
    with swapped_weights(handle, weights):
        after = yield from _phase(
            evaluate(
                handle,
                data,
                config,
                cache=WeightCache(),
                baseline=baseline,
                name=f"{name} (qat {options.method})",
            ),
            2,
        )
    return QatResult(before, after, weights, options, step, distilled, n, history)


def _activation_hooks(
    handle: ModelHandle, config: ModelConfig, student: nn.Module
) -> list[torch.utils.hooks.RemovableHandle]:
    """STE fake-quant of each quantized layer's input (dynamic ranges per batch)."""
    out = []
    for lay in handle.layers:
        act = config.resolve(lay.fqn).activation
        if act is None:
            continue
        spec = act if act.dynamic else act.with_(dynamic=True)

        def pre(_mod: nn.Module, args: tuple[Any, ...], spec: QuantSpec = spec) -> Any:
            if not args or not isinstance(args[0], torch.Tensor):
                return None
            x = args[0]
            if not x.is_floating_point():
                return None
            q = fake_quantize(x.detach(), spec).to(x.dtype)
            return (x + (q - x).detach(), *args[1:])

        out.append(student.get_submodule(lay.module_fqn).register_forward_pre_hook(pre))
    return out
