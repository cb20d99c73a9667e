"""Error propagation: where in the network quantization error enters and where it grows.

For a configuration, at every quantizable layer's output (in execution order):

- **isolated** error: only that layer quantized. Inside the *float* pass, a forward hook on
  the layer runs the layer again on the float input it just received — through its input
  (activation) quantizer and with its fake-quantized weight — and compares that output with
  the float output. No extra pass of the model is needed. (Streamed, the float input is
  kept and the layer re-run in the quantized pass, whose hook has just quantized its
  weight: see :class:`_Recorder`.)
- **cumulative** error: everything up to and including the layer quantized. A second pass of
  the whole model under :func:`~quantviz.eval.apply.apply_config` compares, in a hook, the
  layer's output with the float pass's output of the same layer on the same batch.

Each is summarised by MSE, SQNR (dB, ``10 log10(sum f^2 / sum (q - f)^2)``) and the mean
per-sample cosine similarity; the model output also gets the KL divergence
``KL(softmax(float) || softmax(quantized))`` over its last dimension (mean over every other
position) and the top-1 agreement. Data runs in batches: per batch one float pass (which
keeps that batch's layer outputs) then one quantized pass; only running sums are kept, so
the memory is one batch's activations whatever the data size.

**Flags** (:attr:`LayerError.flagged`): a layer is flagged when

- ``jump``: its cumulative SQNR is more than ``jump_db`` (3 dB: the relative noise power
  doubles) below the cumulative SQNR of the previous layer in execution order (the first
  layer, or one after float-exact layers, has no finite previous value and never jumps), or
- ``worst_isolated``: its isolated SQNR is more than ``outlier_db`` (10 dB) below the median
  isolated SQNR of the quantized layers (a layer that is broken on its own, wherever it is).

:func:`isolated_errors` (the float-pass half alone, for any number of candidate weight
schemes per layer at once) also serves the ``output_sqnr`` sensitivity proxy.
"""

from __future__ import annotations

import logging
import math
import statistics
import weakref
from collections.abc import Callable, Generator, Hashable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from quantviz.core import ModelConfig, QuantSpec
from quantviz.eval.apply import (
    AppliedConfig,
    StreamQuantizeError,
    WeightCache,
    _dynamic_hook,
    _static_hook,
    apply_config,
    check_config,
    needs_calibration,
    prepare_weights,
    streams,
)
from quantviz.eval.before_after import plain_config, remedy_label
from quantviz.eval.forward import check_data, first_batch, forward
from quantviz.eval.results import EvalError, Progress, json_safe
from quantviz.eval.transforms import needs_transforms, prepare_transforms, transformed

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = [
    "JUMP_DB",
    "OUTLIER_DB",
    "DebugResult",
    "ErrorStats",
    "ErrorSums",
    "LayerError",
    "OutputError",
    "debug",
    "flag_layers",
    "isolated_errors",
    "weight_variants",
]

log = logging.getLogger(__name__)

#: cumulative SQNR drop (dB) vs the previous layer that flags a jump (noise power x2)
JUMP_DB = 3.0
#: isolated SQNR this far (dB) below the median of the quantized layers flags an outlier
OUTLIER_DB = 10.0


@dataclass(frozen=True)
class ErrorStats:
    """``mse``, ``sqnr_db`` (inf when exact) and mean per-sample ``cosine``."""

    mse: float
    sqnr_db: float
    cosine: float

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"mse": self.mse, "sqnr_db": self.sqnr_db, "cosine": self.cosine})


@dataclass
class ErrorSums:
    """Running sums of a quantized tensor ``q`` vs its reference ``f`` over batches."""

    sq_err: float = 0.0
    sq_ref: float = 0.0
    numel: int = 0
    cos_sum: float = 0.0
    samples: int = 0

    def add(self, q: torch.Tensor, f: torch.Tensor) -> None:
        """Add one batch (the first dimension is the sample; a 0-d/1-d tensor is one).

        Per-sample sums in float32 (or the tensors' wider dtype), accumulated across
        samples and batches in float64.
        """
        if q.shape != f.shape:
            raise ValueError(f"shapes differ: {tuple(q.shape)} vs {tuple(f.shape)}")
        dt = torch.float64 if torch.float64 in (q.dtype, f.dtype) else torch.float32
        b = int(f.shape[0]) if f.dim() >= 2 else 1
        qf = q.detach().reshape(b, -1).to(dt)
        ff = f.detach().reshape(b, -1).to(dt)
        d = qf - ff
        err = torch.linalg.vecdot(d, d).double()
        ref = torch.linalg.vecdot(ff, ff).double()
        qq = torch.linalg.vecdot(qf, qf).double()
        dot = torch.linalg.vecdot(qf, ff).double()
        self.sq_err += float(err.sum())
        self.sq_ref += float(ref.sum())
        self.numel += f.numel()
        denom = (qq * ref).sqrt()
        both_zero = (qq == 0) & (ref == 0)
        cos = torch.where(denom > 0, dot / denom.clamp_min(1e-300), both_zero.double())
        self.cos_sum += float(cos.clamp(-1.0, 1.0).sum())
        self.samples += b

    def merge(self, other: ErrorSums) -> None:
        """Add the sums of ``other`` (another share of the samples)."""
        self.sq_err += other.sq_err
        self.sq_ref += other.sq_ref
        self.numel += other.numel
        self.cos_sum += other.cos_sum
        self.samples += other.samples

    def result(self) -> ErrorStats:
        if self.numel == 0:
            return ErrorStats(math.nan, math.nan, math.nan)
        if self.sq_err == 0.0:
            sqnr = math.inf
        elif self.sq_ref == 0.0:
            sqnr = -math.inf
        else:
            sqnr = 10.0 * math.log10(self.sq_ref / self.sq_err)
        return ErrorStats(self.sq_err / self.numel, sqnr, self.cos_sum / self.samples)


@dataclass(frozen=True)
class LayerError:
    """One layer's isolated and cumulative output error and its flags."""

    fqn: str
    kind: str
    scheme: str
    quantized: bool
    isolated: ErrorStats
    cumulative: ErrorStats
    #: previous layer's cumulative SQNR minus this one's (None without a finite previous)
    jump_db: float | None
    jump: bool
    worst_isolated: bool

    @property
    def flagged(self) -> bool:
        return self.jump or self.worst_isolated

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "fqn": self.fqn,
                "kind": self.kind,
                "scheme": self.scheme,
                "quantized": self.quantized,
                "isolated": self.isolated.to_dict(),
                "cumulative": self.cumulative.to_dict(),
                "jump_db": self.jump_db,
                "jump": self.jump,
                "worst_isolated": self.worst_isolated,
                "flagged": self.flagged,
            }
        )


@dataclass(frozen=True)
class OutputError:
    """The model output of the quantized model vs the float model."""

    kl: float
    mse: float
    sqnr_db: float
    cosine: float
    top1_agreement: float

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "kl": self.kl,
                "mse": self.mse,
                "sqnr_db": self.sqnr_db,
                "cosine": self.cosine,
                "top1_agreement": self.top1_agreement,
            }
        )


@dataclass
class DebugResult:
    """Per-layer isolated / cumulative errors in execution order, and the output error."""

    layers: list[LayerError]
    output: OutputError
    n_samples: int
    config: ModelConfig | None = None
    jump_threshold_db: float = JUMP_DB
    outlier_db: float = OUTLIER_DB
    seconds: float = 0.0

    @property
    def flagged(self) -> list[str]:
        return [lay.fqn for lay in self.layers if lay.flagged]

    def layer(self, fqn: str) -> LayerError:
        for lay in self.layers:
            if lay.fqn == fqn:
                return lay
        raise KeyError(f"no layer {fqn!r} in the debug result")

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "n_samples": self.n_samples,
                "jump_threshold_db": self.jump_threshold_db,
                "outlier_db": self.outlier_db,
                "layers": [lay.to_dict() for lay in self.layers],
                "output": self.output.to_dict(),
                "flagged": self.flagged,
                "seconds": self.seconds,
            }
        )


# ---------------------------------------------------------------------------------------
# hooks
# ---------------------------------------------------------------------------------------
#: a variant of one layer: fake-quantized weight (None: float; a callable: computed when the
#: layer runs, dropped after — a streamed variant) and input quantizer (None: float input)
Variant = tuple[
    torch.Tensor | Callable[[], torch.Tensor] | None,
    Callable[[torch.Tensor], torch.Tensor] | None,
]


def _lazy_weight(
    handle: ModelHandle, fqn: str, spec: QuantSpec, cache: WeightCache
) -> Callable[[], torch.Tensor]:
    """Layer ``fqn``'s fake-quantized weight under ``spec`` (as stored), computed from the
    current float weight at each call: the cached tensor when the cache holds it, else
    quantized and not kept (the very numbers :meth:`WeightCache.get` gives)."""
    lay = handle.layer(fqn)

    def weight() -> torch.Tensor:
        try:
            return lay.to_stored(cache.dequantized(fqn, spec, handle.quant_weight(fqn)))
        except ValueError as exc:
            raise StreamQuantizeError(str(exc)) from None

    return weight


def _module_of(handle: ModelHandle, fqn: str) -> torch.nn.Module:
    from quantviz.model.handle import _submodule

    try:  # ValueError naming the model when its layers cannot be hooked (TorchScript)
        handle.add_hooks(fqn, pre=lambda x: None)()
    except ValueError as exc:
        raise ValueError(f"error propagation needs layer hooks: {exc}") from None
    return _submodule(handle.module, handle.layer(fqn).module_fqn)


def _run_variant(
    mod: torch.nn.Module,
    p: torch.Tensor,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    variant: Variant,
) -> torch.Tensor:
    """``mod`` re-run on its float inputs ``args`` with the variant's weight and input
    quantizer (hooks of ``mod`` are not re-entered)."""
    wq, act = variant
    if act is not None and args and isinstance(args[0], torch.Tensor):
        args = (act(args[0]), *args[1:])
    if wq is None:
        return mod.forward(*args, **kwargs)
    if callable(wq):  # streamed: this layer's quantized weight exists for this call only
        wq = wq()
    old = p.data
    p.data = wq
    try:
        return mod.forward(*args, **kwargs)
    finally:
        p.data = old


class _Recorder:
    """Forward hooks on every layer for the float pass (and, optionally, the quantized one).

    Float pass: records the execution order, keeps each layer's float outputs of the current
    batch (one per call) when ``keep`` is set, and adds each variant's isolated error.
    Quantized pass: adds each layer's output vs the kept float output to ``cumulative``.

    ``defer`` (a streamed debug: the quantized pass applies the very config of the lazy
    variants): the float pass keeps the float inputs of a layer with a lazy (streamed)
    variant instead of quantizing its weight there, and the quantized pass — where the
    streaming hook has just quantized that weight and put it in place — runs the layer again
    on them for the isolated error. Each weight is then quantized once per batch, not twice;
    the numbers are the same (same inputs, same weight). An input several layers receive
    (q/k/v projections) is kept once. A kept input the quantized pass did not use (the layer
    ran fewer times, or its weight was not in place) is checked by :meth:`finish` after it,
    quantizing that weight as the float pass would have.
    """

    def __init__(
        self,
        handle: ModelHandle,
        variants: Mapping[str, Sequence[tuple[Hashable, Variant]]],
        *,
        keep: bool,
        defer: bool = False,
    ) -> None:
        self.handle = handle
        self.variants = variants
        self.keep = keep
        self.defer = defer
        #: per deferred layer, per call of this batch: its float (args, kwargs), None once used
        self.float_in: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]] | None]] = {}
        self._float_ptr: dict[str, int] = {}  # the float weight's address (not swapped in)
        self._seen: dict[int, tuple[Any, int, torch.Tensor]] = {}  # id -> (ref, version, copy)
        self.order: list[str] = []
        self.isolated: dict[Hashable, ErrorSums] = {}
        self.cumulative: dict[str, ErrorSums] = {}
        #: per layer, per call of this batch: its float output, None once the quantized pass used it
        self.float_out: dict[str, list[torch.Tensor | None]] = {}
        self.calls: dict[str, int] = {}
        self.quantized_pass = False
        self._mods = {f: _module_of(handle, f) for f in handle.fqns}
        self._removers: list[Any] = []

    def attach(self) -> None:
        by_mod: dict[int, list[str]] = {}
        for fqn, mod in self._mods.items():
            by_mod.setdefault(id(mod), []).append(fqn)
        for fqn, mod in self._mods.items():
            if by_mod[id(mod)][0] != fqn:
                continue  # one hook per module: several layers of one module share it
            names = by_mod[id(mod)]
            self._removers.append(
                mod.register_forward_hook(self._hook(names, mod), with_kwargs=True)
            )

    def detach(self) -> None:
        for r in self._removers:
            r.remove()
        self._removers.clear()

    def end_float_pass(self) -> None:
        """Forget which tensors the kept inputs copy (each is freed once used)."""
        self._seen.clear()

    def new_batch(self) -> None:
        self.float_out.clear()
        self.float_in.clear()
        self._seen.clear()
        self.calls.clear()

    def _hook(self, names: list[str], mod: torch.nn.Module):
        def hook(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            if not isinstance(out, torch.Tensor) or not out.is_floating_point():
                return
            for fqn in names:
                if self.quantized_pass:
                    self._cumulative(fqn, mod, out)
                else:
                    self._float(fqn, mod, args, kwargs, out)

        return hook

    def _deferred(self, fqn: str) -> list[tuple[Hashable, Variant]]:
        """The variants of ``fqn`` whose isolated run waits for the quantized pass."""
        if not self.defer:
            return []
        return [kv for kv in self.variants.get(fqn, ()) if callable(kv[1][0])]

    def _copy(self, x: Any) -> Any:
        """A copy of a float input tensor (one per tensor of this batch, however many layers
        receive it: a weak reference and the version counter tell it is the same, unchanged
        tensor); anything else as is."""
        if not isinstance(x, torch.Tensor):
            return x
        hit = self._seen.get(id(x))
        if hit is not None and hit[0]() is x and hit[1] == x._version:
            return hit[2]
        c = x.detach().clone()
        self._seen[id(x)] = (weakref.ref(x), x._version, c)
        return c

    def _float(
        self,
        fqn: str,
        mod: torch.nn.Module,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        out: torch.Tensor,
    ) -> None:
        if fqn not in self.order:
            self.order.append(fqn)
        ref = out.detach()
        if self.keep:  # a clone: an in-place op after the layer must not change it
            self.float_out.setdefault(fqn, []).append(ref.clone())
        variants = self.variants.get(fqn, ())
        if not variants:
            return
        p = self.handle.weight(fqn)
        if self.keep and self._deferred(fqn):  # run in the quantized pass (see the class)
            variants = [kv for kv in variants if not callable(kv[1][0])]
            self._float_ptr[fqn] = p.data_ptr()
            kept = (
                tuple(self._copy(a) for a in args),
                {k: self._copy(v) for k, v in kwargs.items()},
            )
            self.float_in.setdefault(fqn, []).append(kept)
        with torch.no_grad():
            for key, var in variants:
                q = _run_variant(mod, p, args, kwargs, var)
                self.isolated.setdefault(key, ErrorSums()).add(q, ref)

    def _cumulative(self, fqn: str, mod: torch.nn.Module, out: torch.Tensor) -> None:
        i = self.calls.get(fqn, 0)
        self.calls[fqn] = i + 1
        refs = self.float_out.get(fqn, [])
        ins = self.float_in.get(fqn, [])
        ref = refs[i] if i < len(refs) else None
        if ref is None:
            return
        kept = ins[i] if i < len(ins) else None
        if kept is not None:
            p = self.handle.weight(fqn)
            if p.data_ptr() != self._float_ptr.get(fqn):  # the quantized weight is in place
                args, kwargs = kept
                ins[i] = kept = None
                with torch.no_grad():
                    for key, (_wq, act) in self._deferred(fqn):
                        q = _run_variant(mod, p, args, kwargs, (None, act))
                        self.isolated.setdefault(key, ErrorSums()).add(q, ref)
        if ref.shape == out.shape:
            self.cumulative.setdefault(fqn, ErrorSums()).add(out, ref)
        if kept is None:  # used: freed now, not at the end of the batch
            refs[i] = None

    def finish(self) -> None:
        """The deferred isolated runs the quantized pass did not do (with the float weights
        back in place): each quantizes its weight here, as the float pass would have."""
        for fqn, ins in self.float_in.items():
            refs = self.float_out.get(fqn, [])
            for i, kept in enumerate(ins):
                ref = refs[i] if i < len(refs) else None
                if kept is None or ref is None:
                    continue
                ins[i] = None
                args, kwargs = kept
                p = self.handle.weight(fqn)
                with torch.no_grad():
                    for key, var in self._deferred(fqn):
                        q = _run_variant(self._mods[fqn], p, args, kwargs, var)
                        self.isolated.setdefault(key, ErrorSums()).add(q, ref)


def _spans(n: int, bs: int) -> list[tuple[int, int]]:
    return [(a, min(a + bs, n)) for a in range(0, n, bs)]


def _prepare(
    handle: ModelHandle, data: EvalData, batch_size: int, max_samples: int | None
) -> tuple[int, list[tuple[int, int]]]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer, got {batch_size!r}")
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise ValueError(f"max_samples: must be a positive integer, got {max_samples!r}")
    check_data(data)
    n = int(data.x.shape[0]) if max_samples is None else min(max_samples, int(data.x.shape[0]))
    with torch.no_grad():
        bs, _ = first_batch(handle, data, min(batch_size, n), "debug (float model)")
    return n, _spans(n, bs)


def isolated_errors(
    handle: ModelHandle,
    data: EvalData,
    variants: Mapping[str, Sequence[tuple[Hashable, Variant]]],
    *,
    batch_size: int = 64,
    max_samples: int | None = None,
    stage: str = "isolated",
) -> Generator[Progress, None, tuple[list[str], dict[Hashable, ErrorStats]]]:
    """The isolated output error of every variant (key -> (weight, input quantizer)) of
    every layer, from float passes alone; yields per batch; returns (execution order of
    the layers, key -> :class:`ErrorStats`)."""
    _n, spans = _prepare(handle, data, batch_size, max_samples)
    rec = _Recorder(handle, variants, keep=False)
    rec.attach()
    try:
        for i, (a, b) in enumerate(spans, start=1):
            with torch.no_grad():
                forward(handle, data, a, b, f"{stage} (float model)", False)
            yield Progress(i, len(spans), stage)
    finally:
        rec.detach()
    return rec.order, {k: s.result() for k, s in rec.isolated.items()}


# ---------------------------------------------------------------------------------------
# the debugger
# ---------------------------------------------------------------------------------------
def _config_variants(
    handle: ModelHandle,
    config: ModelConfig,
    cache: WeightCache,
    stats: Mapping[str, LayerStats],
    entries: Mapping[str, Any] | None = None,
    *,
    stream: bool = False,
) -> dict[str, list[tuple[Hashable, Variant]]]:
    """Per quantized layer, its variant under ``config``; ``entries`` (from
    :func:`~quantviz.eval.apply.prepare_weights` with a transformed state): the layers'
    transformed / AdaRound / GPTQ weights instead of the model's own quantized.
    ``stream``: each weight is quantized when its layer runs (:func:`_lazy_weight`)."""
    out: dict[str, list[tuple[Hashable, Variant]]] = {}
    for fqn in handle.fqns:
        lc = config.resolve(fqn)
        wq: torch.Tensor | Callable[[], torch.Tensor] | None = None
        if lc.weight is not None:
            lay = handle.layer(fqn)  # quantized as [out, in]; swapped in as stored
            if stream:
                wq = _lazy_weight(handle, fqn, lc.weight, cache)
            elif entries is not None and fqn in entries:
                wq = lay.to_stored(entries[fqn].dequantized)
            else:
                w = handle.quant_weight(fqn)
                wq = lay.to_stored(cache.get(fqn, lc.weight, w).dequantized)
        act: Callable[[torch.Tensor], torch.Tensor] | None = None
        if lc.activation is not None:
            if lc.activation.dynamic:
                act = _dynamic_hook(fqn, lc.activation)
            else:
                act = _static_hook(cache.activation(fqn, lc.activation, stats[fqn]))
        if wq is not None or act is not None:
            out[fqn] = [(fqn, (wq, act))]
    return out


class _OutputSums:
    def __init__(self) -> None:
        self.err = ErrorSums()
        self.kl = 0.0
        self.agree = 0
        self.positions = 0

    #: positions x classes per float64 chunk of the KL (an LM's logits: a few rows at a time)
    CHUNK = 1 << 20

    def add(self, q: torch.Tensor, f: torch.Tensor) -> None:
        self.err.add(q, f)
        q2 = q.reshape(-1, q.shape[-1]) if q.dim() else q.reshape(1, 1)
        f2 = f.reshape(-1, f.shape[-1]) if f.dim() else f.reshape(1, 1)
        rows = max(1, self.CHUNK // max(1, int(q2.shape[1])))
        for a in range(0, int(q2.shape[0]), rows):  # float64 copies of a chunk only
            qc, fc = q2[a : a + rows].double(), f2[a : a + rows].double()
            lp, lq = torch.log_softmax(fc, dim=-1), torch.log_softmax(qc, dim=-1)
            self.kl += float((lp.exp() * (lp - lq)).sum(dim=-1).clamp_min(0).sum())
            self.agree += int((qc.argmax(-1) == fc.argmax(-1)).sum())
        self.positions += int(q2.shape[0])

    def merge(self, other: _OutputSums) -> None:
        self.err.merge(other.err)
        self.kl += other.kl
        self.agree += other.agree
        self.positions += other.positions

    def result(self) -> OutputError:
        e = self.err.result()
        p = max(self.positions, 1)
        return OutputError(self.kl / p, e.mse, e.sqnr_db, e.cosine, self.agree / p)


def flag_layers(
    rows: list[tuple[str, str, str, bool, ErrorStats, ErrorStats]],
    jump_db: float = JUMP_DB,
    outlier_db: float = OUTLIER_DB,
) -> list[LayerError]:
    """:class:`LayerError` rows with the flags of the module docstring."""
    iso = [r[4].sqnr_db for r in rows if r[3] and math.isfinite(r[4].sqnr_db)]
    median = statistics.median(iso) if iso else math.nan
    out: list[LayerError] = []
    prev = math.nan
    for fqn, kind, scheme, quantized, isolated, cumulative in rows:
        cum = cumulative.sqnr_db
        drop: float | None = None
        if math.isfinite(prev) and not math.isnan(cum):
            drop = prev - cum
        jump = drop is not None and drop > jump_db
        worst = (
            quantized
            and math.isfinite(median)
            and not math.isnan(isolated.sqnr_db)
            and isolated.sqnr_db < median - outlier_db
        )
        out.append(
            LayerError(fqn, kind, scheme, quantized, isolated, cumulative, drop, jump, worst)
        )
        if not math.isnan(cum):
            prev = cum
    return out


def debug(
    handle: ModelHandle,
    data: EvalData,
    config: ModelConfig,
    *,
    stats: MutableMapping[str, LayerStats] | None = None,
    cache: WeightCache | None = None,
    batch_size: int = 128,
    max_samples: int | None = None,
    jump_db: float = JUMP_DB,
    outlier_db: float = OUTLIER_DB,
    executor: Any = None,
) -> Generator[Progress, None, DebugResult]:
    """Isolated and cumulative error of every layer under ``config`` over ``data.x``.

    ``executor`` (a :class:`quantviz.eval.cluster.Cluster`) splits the batches over Ray
    tasks; each returns its running sums and the sums are added here (the same numbers up
    to float summation order); it does not take a configuration with transforms or
    AdaRound / GPTQ rounding.

    Transforms and rounding (``config.transforms``, ``rounding: adaround | gptq``) are
    computed first (``transform`` progress; cached in ``cache.transforms``): the quantized
    pass runs the transformed model with its transformed / rounded weights, the reference
    the float model under the same transforms (see :func:`_remedy_states`), so the strip of
    a config and of :func:`~quantviz.eval.before_after.plain_config` of it show what the
    remedies changed per layer.

    Memory follows :func:`~quantviz.eval.evaluate.evaluate`: when the config's fake-quantized
    weights do not fit ``cache`` (:func:`~quantviz.eval.apply.quantized_bytes` >
    ``cache.max_bytes``) they are streamed — each layer's weight is quantized when its module
    runs in the quantized pass (``apply_config(stream=True)``) and dropped after, so the
    model never has a second full copy of its weights. The float pass then keeps each
    quantized layer's float inputs (one batch's, an input shared by several layers once)
    and the isolated check runs in the quantized pass with the weight that pass just
    quantized: each weight is quantized once per batch, not twice. The numbers are
    bit-identical to the up-front path. A model
    that reads a weight outside its layer's module (a layer missing from the streamed pass)
    is debugged again with every weight up front. Transforms and AdaRound / GPTQ rounding
    always take the up-front path (:func:`~quantviz.eval.apply.stream_refusal`).

    A generator yielding :class:`Progress` (``calibrate`` when static activation specs need
    statistics, then ``debug`` per batch); closing it at any yield removes the hooks and
    restores the float model. Returns a :class:`DebugResult` (layers in execution order;
    layers the data never reaches are left out). ``ValueError`` before any work for a
    config that does not apply or a model whose layers cannot be hooked; :class:`EvalError`
    when the model fails on the data.
    """
    import time

    from quantviz.eval.evaluate import calibrate, run

    t0 = time.perf_counter()
    check_config(handle, config)
    cache = cache if cache is not None else WeightCache()
    stats = stats if stats is not None else {}
    if handle.flavour == "onnx":  # one onnxruntime graph: no layer's output is seen alone
        raise ValueError(
            f"{handle.name}: error propagation needs each layer's output; an ONNX model runs "
            "as one onnxruntime graph (open the PyTorch model, or use quantviz eval)"
        )
    for f in handle.fqns:  # hookable? (ValueError naming the model)
        _module_of(handle, f)
        break
    state, ref_state = None, None
    if needs_transforms(handle, config):
        if executor is not None:
            raise ValueError(
                "debug --cluster: a configuration with transforms or AdaRound / GPTQ "
                f"rounding ({remedy_label(config)}) is debugged in this process only"
            )
        state, ref_state = yield from _remedy_states(handle, data, config, cache, batch_size)
        if state is not None and not state.empty:
            stats = state.stats  # activation ranges of the transformed model
    static = needs_calibration(handle, config)
    if static:
        with transformed(handle, state):
            yield from calibrate(handle, data, static, stats, batch_size=batch_size)
    stream = streams(handle, config, cache, state)
    try:
        entries = None
        if state is not None:
            entries = run(prepare_weights(handle, config, cache, state))
        variants = _config_variants(handle, config, cache, stats, entries, stream=stream)
    except ValueError as exc:
        raise EvalError(handle.source, "quantize", str(exc)) from exc
    n, spans = _prepare(handle, data, batch_size, max_samples)
    if executor is not None:
        rec, outs = yield from _debug_on(executor, handle, data, config, stats, spans)
    else:
        rec = _Recorder(handle, variants, keep=True, defer=stream)
        outs = _OutputSums()
        states = (state, ref_state, entries)
        i = 0
        while i < len(spans):
            a, b = spans[i]
            applied = _debug_batch(
                handle, data, config, stats, cache, rec, outs, a, b, states, stream
            )
            missed = _unstreamed(handle, config, applied) if stream and i == 0 else []
            if missed:  # a weight read outside its module stayed float: redo up front
                log.warning(
                    "%s: layers %s did not run as modules in the streamed pass; debugging "
                    "again with every weight quantized up front",
                    handle.name,
                    ", ".join(missed[:5]) + (" ..." if len(missed) > 5 else ""),
                )
                stream = False
                try:
                    variants = _config_variants(handle, config, cache, stats, entries)
                except ValueError as exc:
                    raise EvalError(handle.source, "quantize", str(exc)) from exc
                rec = _Recorder(handle, variants, keep=True, defer=stream)
                outs = _OutputSums()
                continue
            i += 1
            yield Progress(i, len(spans), "debug")
    rows = []
    for fqn in rec.order:
        lay = handle.layer(fqn)
        lc = config.resolve(fqn)
        quantized = fqn in variants
        iso = rec.isolated[fqn].result() if fqn in rec.isolated else ErrorStats(0.0, math.inf, 1.0)
        cum = rec.cumulative[fqn].result() if fqn in rec.cumulative else ErrorStats(*[math.nan] * 3)
        rows.append((fqn, lay.kind, lc.short(), quantized, iso, cum))
    return DebugResult(
        flag_layers(rows, jump_db, outlier_db),
        outs.result(),
        n,
        config,
        jump_db,
        outlier_db,
        time.perf_counter() - t0,
    )


def _debug_batch(
    handle: ModelHandle,
    data: EvalData,
    config: ModelConfig,
    stats: MutableMapping[str, LayerStats],
    cache: WeightCache,
    rec: _Recorder,
    outs: _OutputSums,
    a: int,
    b: int,
    states: tuple[Any, Any, Any] = (None, None, None),
    stream: bool = False,
) -> AppliedConfig:
    """One float and one quantized pass over samples ``a:b``, adding to ``rec`` and ``outs``.
    ``states``: the transformed state, the reference (float) state and the prepared weights
    of a configuration with transforms or AdaRound / GPTQ (:func:`_remedy_states`).
    ``stream``: the quantized pass quantizes each weight when its module runs (the float
    pass's variants are then lazy too, see :func:`_config_variants`)."""
    state, ref_state, entries = states
    rec.new_batch()
    rec.attach()
    try:
        rec.quantized_pass = False
        with torch.no_grad(), transformed(handle, ref_state):
            ref = _forward(handle, data, a, b, "debug (float model)", False)
        rec.end_float_pass()
        rec.quantized_pass = True
        try:
            applying = apply_config(
                handle,
                config,
                stats=stats,
                cache=cache,
                state=state,
                prepared=entries,
                stream=stream,
            )
        except ValueError as exc:
            raise EvalError(handle.source, "quantize", str(exc)) from exc
        with torch.no_grad(), applying as applied:
            out = _forward(handle, data, a, b, "debug (quantized model)", True)
    finally:
        rec.detach()
    try:
        rec.finish()
    except StreamQuantizeError as exc:
        raise EvalError(handle.source, "quantize", str(exc)) from exc
    outs.add(out, ref)
    rec.new_batch()
    return applied


def _forward(
    handle: ModelHandle, data: EvalData, a: int, b: int, stage: str, quantized: bool
) -> Any:
    """:func:`~quantviz.eval.forward.forward`; a weight that failed to quantize in a
    streaming hook is reported as the ``quantize`` stage naming the layer."""
    try:
        return forward(handle, data, a, b, stage, quantized)
    except EvalError as exc:
        if isinstance(exc.__cause__, StreamQuantizeError):
            raise EvalError(handle.source, "quantize", str(exc.__cause__)) from exc
        raise


def _unstreamed(handle: ModelHandle, config: ModelConfig, applied: AppliedConfig) -> list[str]:
    """The quantized layers a streamed pass never swapped in (their module did not run)."""
    return [
        f for f in handle.fqns if config.resolve(f).weight is not None and f not in applied.streamed
    ]


def _debug_task(shared: Any, item: tuple[Any, ...]) -> tuple[Any, ...]:
    """A Ray task (:meth:`quantviz.eval.cluster.Cluster.map`): the sums over some batches."""
    config, stats, spans = item
    handle, data, cache = shared.handle, shared.data, shared.cache
    stream = streams(handle, config, cache)
    while True:  # streamed as debug() decides, up front when a layer was missed
        variants = _config_variants(handle, config, cache, stats, stream=stream)
        rec = _Recorder(handle, variants, keep=True, defer=stream)
        outs = _OutputSums()
        for i, (a, b) in enumerate(spans):
            applied = _debug_batch(
                handle, data, config, stats, cache, rec, outs, a, b, stream=stream
            )
            if stream and i == 0 and _unstreamed(handle, config, applied):
                break
        else:
            return rec.order, rec.isolated, rec.cumulative, outs
        stream = False


def _debug_on(
    executor: Any,
    handle: ModelHandle,
    data: EvalData,
    config: ModelConfig,
    stats: MutableMapping[str, LayerStats],
    spans: list[tuple[int, int]],
) -> Generator[Any, None, tuple[_Recorder, _OutputSums]]:
    """The batches as Ray tasks (about two per worker slot); their sums added in order."""
    from quantviz.eval.points import PointFailed

    k = max(1, min(len(spans), 2 * int(getattr(executor, "slots", 1) or 1)))
    shares = [spans[i::k] for i in range(k)]
    items = [(config, dict(stats), share) for share in shares]
    names = [f"debug batches {i + 1}/{k}" for i in range(k)]
    outcomes = yield from executor.map(_debug_task, items, handle, data, names=names)
    rec = _Recorder(handle, {}, keep=False)
    outs = _OutputSums()
    for o in outcomes:
        if isinstance(o, PointFailed):
            raise EvalError(handle.source, "debug", f"{o.name}: {o.error}")
        order, isolated, cumulative, out_sums = o
        for f in order:
            if f not in rec.order:
                rec.order.append(f)
        for key, sums in isolated.items():
            rec.isolated.setdefault(key, ErrorSums()).merge(sums)
        for f, sums in cumulative.items():
            rec.cumulative.setdefault(f, ErrorSums()).merge(sums)
        outs.merge(out_sums)
    return rec, outs


def _remedy_states(
    handle: ModelHandle,
    data: EvalData,
    config: ModelConfig,
    cache: WeightCache,
    batch_size: int,
) -> Generator[Progress, None, tuple[Any, Any]]:
    """``(state, reference state)`` of a configuration with transforms or rounding.

    The quantized pass runs under ``state``; the float reference under the same transforms
    without ``bias_correction`` (which changes the biases to offset the *quantized* weights'
    mean shift: in the reference it would hide what it corrects), so that every layer's
    output is compared in the same (equalized / smoothed / rotated) basis and the
    function-preserving transforms leave the reference equal to the float model.
    """
    try:
        state = yield from prepare_transforms(
            handle, config, data.calib_x, batch_size=batch_size, store=cache.transforms
        )
        ref_state = state
        if state is not None and "bias_correction" in config.transform_names:
            rest = [(n, p) for n, p in config.transforms if n != "bias_correction"]
            ref_cfg = plain_config(config).with_transforms(rest)
            ref_state = yield from prepare_transforms(
                handle, ref_cfg, data.calib_x, batch_size=batch_size, store=cache.transforms
            )
    except ValueError as exc:
        raise EvalError(handle.source, "transform", str(exc)) from exc
    return state, ref_state


def weight_variants(
    handle: ModelHandle,
    candidates: Sequence[tuple[str, QuantSpec]],
    cache: WeightCache,
    *,
    stream: bool = False,
) -> dict[str, list[tuple[Hashable, Variant]]]:
    """Per layer, one weight-only variant per candidate ``(fqn, spec)`` (key: the pair).
    ``stream``: each candidate's weight is quantized when its layer runs and dropped after
    (:func:`_lazy_weight`), instead of every candidate's weight held for the whole pass."""
    out: dict[str, list[tuple[Hashable, Variant]]] = {}
    for fqn, spec in candidates:
        wq: torch.Tensor | Callable[[], torch.Tensor]
        if stream:
            wq = _lazy_weight(handle, fqn, spec, cache)
        else:
            entry = cache.get(fqn, spec, handle.quant_weight(fqn))
            wq = handle.layer(fqn).to_stored(entry.dequantized)
        out.setdefault(fqn, []).append(((fqn, spec), (wq, None)))
    return out
