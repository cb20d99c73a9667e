"""Apply a ``ModelConfig`` to a loaded model for the duration of a ``with`` block.

Weights: each quantized layer's parameter gets its ``.data`` swapped for the fake-quantized
tensor (from a :class:`WeightCache`, so a config that changed in one layer re-quantizes only
that layer); on exit the original tensor is put back — the very same storage, bit for bit —
even when the block raises. Pre-quantized weights make the forward pass cost what the float
one does.

Activations are quantized at the INPUT of each quantized layer (the tensor the inspector
shows for that layer), never at its output: a layer with an activation spec gets a forward
pre-hook that fake-quantizes the tensor entering it, with parameters either fitted once from
the calibration statistics of that input (static, per-tensor; :func:`fit_static`) or
measured on every batch (``spec.dynamic``). A value feeding two quantized layers is quantized
once for each, with each layer's own parameters; a layer without an activation spec sees
float inputs. The CLI (``quantviz eval``), the GUI and library callers all go through
:func:`apply_config` (via :func:`quantviz.eval.evaluate`), so they give the same numbers.

Static ``minmax`` ranges use the exact running min / max of the calibration data (as torch's
``MinMaxObserver``), not the capture histogram's outer edges, whose position depends on how
the histogram grew batch by batch: a W8A8 result therefore does not depend on the
calibration batch size. Tested against an independent torch fake-quant
(``MinMaxObserver`` + ``fake_quantize_per_tensor_affine`` at every conv / linear input) in
``tests/eval/test_w8a8_reference.py``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from quantviz.core import FittedQuantizer, ModelConfig, QuantSpec, fit_quantizer, quantize
from quantviz.eval.results import Progress
from quantviz.eval.transforms import (
    Transformed,
    TransformStore,
    needs_transforms,
    rounding_layers,
    transformed,
)

if TYPE_CHECKING:
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = [
    "AppliedConfig",
    "ParameterSwap",
    "WeightCache",
    "WeightEntry",
    "apply_config",
    "check_config",
    "needs_calibration",
    "prepare_weights",
    "quantized_bytes",
    "stream_refusal",
    "streams",
    "swapped_parameters",
]

_APPLIED_FLAG = "_quantviz_applied"


@dataclass(frozen=True)
class WeightEntry:
    """A layer's weight under one spec: the fake-quantized tensor and its error numbers."""

    dequantized: torch.Tensor
    sqnr_db: float
    mse: float
    bits_per_value: float
    clipped_fraction: float
    seconds: float


def _source_key(w: torch.Tensor) -> tuple[Any, ...]:
    return (w.data_ptr(), w._version, tuple(w.shape), w.dtype, str(w.device))


class WeightCache:
    """Fake-quantized weights keyed by ``(fqn, spec)``, least recently used evicted.

    An entry remembers which tensor it was computed from (storage address, version counter,
    shape, dtype, device) and is recomputed if the weight changed. ``max_bytes`` bounds the
    memory held by the dequantized tensors. The cache also keeps the fitted static activation
    quantizers, keyed by ``(fqn, spec)`` and the statistics object they were fitted on, and
    the last few transformed states (:class:`~quantviz.eval.transforms.TransformStore`). A
    weight under transforms is keyed by the transformed state's key too (``tag``).
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        if not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes: must be a non-negative integer, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._w: OrderedDict[tuple[str, QuantSpec], tuple[tuple[Any, ...], WeightEntry]] = (
            OrderedDict()
        )
        self._act: dict[tuple[str, QuantSpec], tuple[Any, int, FittedQuantizer]] = {}
        #: the last few transformed states (:mod:`quantviz.eval.transforms`)
        self.transforms = TransformStore()
        self.hits = 0
        self.misses = 0

    # -- weights --------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        return sum(
            e.dequantized.numel() * e.dequantized.element_size() for _, e in self._w.values()
        )

    def __len__(self) -> int:
        return len(self._w)

    def __contains__(self, key: tuple[str, QuantSpec]) -> bool:
        return key in self._w

    def peek(self, fqn: str, spec: QuantSpec, tag: Any = None) -> WeightEntry | None:
        """The cached entry without checking the source or counting a hit."""
        hit = self._w.get((fqn, spec) if tag is None else (fqn, spec, tag))  # type: ignore[arg-type]
        return None if hit is None else hit[1]

    def get(
        self,
        fqn: str,
        spec: QuantSpec,
        weight: torch.Tensor,
        tag: Any = None,
        *,
        keep: bool = True,
    ) -> WeightEntry:
        """The entry for ``weight`` (layer ``fqn``) under ``spec``, computing it if needed.

        ``tag`` (hashable) tells apart weights of the same layer under different transforms.
        ``keep=False`` computes a missing entry without storing it (nothing is evicted).
        """
        key: Any = (fqn, spec) if tag is None else (fqn, spec, tag)
        src = _source_key(weight)
        hit = self._w.get(key)
        if hit is not None and hit[0] == src:
            self._w.move_to_end(key)
            self.hits += 1
            return hit[1]
        self.misses += 1
        t0 = time.perf_counter()
        r, dq = _quantized(fqn, spec, weight)
        entry = WeightEntry(
            dequantized=dq,
            sqnr_db=float(r.sqnr_db),
            mse=float(r.mse),
            bits_per_value=float(r.bits_per_value),
            clipped_fraction=float(r.clipped_fraction),
            seconds=time.perf_counter() - t0,
        )
        if not keep:
            return entry
        self._w[key] = (src, entry)
        self._w.move_to_end(key)
        self._evict()
        return entry

    def dequantized(self, fqn: str, spec: QuantSpec, weight: torch.Tensor) -> torch.Tensor:
        """Only the fake-quantized tensor: the cached one, else computed without its error
        numbers and not stored (a streamed pass after the first)."""
        hit = self._w.get((fqn, spec))
        if hit is not None and hit[0] == _source_key(weight):
            self._w.move_to_end((fqn, spec))
            self.hits += 1
            return hit[1].dequantized
        self.misses += 1
        return _quantized(fqn, spec, weight)[1]

    def _evict(self) -> None:
        total = self.nbytes
        while total > self.max_bytes and len(self._w) > 1:
            _, (_, e) = self._w.popitem(last=False)
            total -= e.dequantized.numel() * e.dequantized.element_size()

    # -- static activation quantizers -------------------------------------------------------
    def activation(self, fqn: str, spec: QuantSpec, stats: LayerStats) -> FittedQuantizer:
        """The static quantizer of layer ``fqn``'s input fitted on ``stats.input``."""
        key = (fqn, spec)
        hit = self._act.get(key)
        if hit is not None and hit[0] is stats.input and hit[1] == stats.input.count:
            return hit[2]
        fq = fit_static(fqn, spec, stats)
        self._act[key] = (stats.input, stats.input.count, fq)
        return fq

    def clear(self) -> None:
        self._w.clear()
        self._act.clear()
        self.transforms.clear()
        self.hits = self.misses = 0


def _quantized(fqn: str, spec: QuantSpec, weight: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """``quantize(weight, spec)`` and its dequantized tensor on the weight's device and
    layout; the error names the layer."""
    try:
        r = quantize(weight.detach(), spec)
    except ValueError as exc:
        raise ValueError(f"layer {fqn}: weight: {exc}") from None
    dq = r.dequantized
    if dq.device != weight.device:
        dq = dq.to(weight.device)
    if weight.is_contiguous() and not dq.is_contiguous():
        dq = dq.contiguous()
    return r, dq


def fit_static(fqn: str, spec: QuantSpec, stats: LayerStats) -> FittedQuantizer:
    """Fit a per-tensor quantizer of layer ``fqn``'s input from its calibration statistics.

    ``minmax``: the exact running extremes; the other calibrations (percentile, mse, kl,
    k-means) read the capture histogram.
    """
    if spec.granularity != "per_tensor":
        raise ValueError(
            f"layer {fqn}: activation: static quantization uses one range per tensor "
            f"(granularity per_tensor), got {spec.granularity}; use dynamic: true for "
            "per-channel activation ranges"
        )
    st = stats.input
    if st.count == 0:
        raise ValueError(f"layer {fqn}: activation: no calibration data reached this layer")
    try:
        if spec.calibration == "minmax" and spec.quantizer != "kmeans":
            # the exact running extremes, as torch's MinMaxObserver keeps them: the
            # histogram's outer edges depend on how its range grew, i.e. on the batch size
            ext = torch.tensor([st.min, st.max], dtype=torch.float32)
            return fit_quantizer(spec, values=ext)
        return fit_quantizer(spec, histogram=st.histogram())
    except ValueError as exc:
        raise ValueError(f"layer {fqn}: activation: {exc}") from None


def check_config(handle: ModelHandle, config: ModelConfig) -> None:
    """Refuse, before any work, a ``config`` that cannot apply to ``handle``'s model.

    ``ValueError`` naming every override key that matches no layer, or every layer whose
    resolved spec cannot apply to its weight's shape (``group_size: 128 does not divide the
    row length 27``, a per-channel ``axis`` out of range) or whose static activation spec is
    not per-tensor, and activation specs on a model whose layers cannot be hooked (a
    TorchScript model). Reads shapes only (no tensor is touched, no forward pass runs).
    """
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config: must be a ModelConfig, got {type(config).__name__}")
    unknown = config.unknown_keys(handle.fqns)
    if unknown:
        raise ValueError(
            f"config: layers {', '.join(unknown)} match no layer of {handle.name} "
            f"(layers: {', '.join(handle.fqns)})"
        )
    from quantviz.core.quantizers.base import row_view

    problems: list[str] = []
    hooks_checked = False  # activation quantization hooks layer inputs: can this model?
    for lay in handle.layers:
        lc = config.resolve(lay.fqn)
        if lc.weight is not None:
            try:
                row_view(lay.weight_shape, lc.weight)
            except ValueError as exc:
                problems.append(f"layer {lay.fqn}: weight: {exc} (scheme {lc.weight.short()})")
        act = lc.activation
        if act is not None and not act.dynamic and act.granularity != "per_tensor":
            problems.append(
                f"layer {lay.fqn}: activation: static quantization uses one range per tensor "
                f"(granularity per_tensor), got {act.granularity}; use dynamic: true for "
                "per-channel activation ranges"
            )
        if act is not None and handle.flavour == "onnx":  # QDQ in the graph: see onnx_model
            from quantviz.model.onnx_model import activation_refusal

            why = activation_refusal(act)
            if why:
                problems.append(f"layer {lay.fqn}: activation: {why}")
        if act is not None and not hooks_checked:
            _check_hooks(handle, lay.fqn, problems)
            hooks_checked = True
    if problems:
        more = f"; and {len(problems) - 2} more" if len(problems) > 2 else ""
        raise ValueError(
            f"config does not apply to {handle.name}: " + "; ".join(problems[:2]) + more
        )


def _check_hooks(handle: ModelHandle, fqn: str, problems: list[str]) -> None:
    """Add a problem unless layer ``fqn``'s input can be hooked (tried, removed at once)."""
    try:
        remove = handle.add_hooks(fqn, pre=lambda x: None)
    except ValueError as exc:
        problems.append(f"activation quantization: {exc}")
        return
    remove()


def quantized_bytes(handle: ModelHandle, config: ModelConfig) -> int:
    """Bytes of the fake-quantized weights of ``config``'s quantized layers (in the weights'
    own dtype, as :class:`WeightCache` holds them; a tied weight once). Reads shapes only."""
    n = 0
    for lay in handle.layers:
        if config.resolve(lay.fqn).weight is not None:
            n += int(lay.weight_numel) * int(handle.weight(lay.fqn).element_size())
    return n


def stream_refusal(
    handle: ModelHandle, config: ModelConfig, state: Transformed | None = None
) -> str | None:
    """Why ``apply_config(..., stream=True)`` cannot apply ``config`` to ``handle``, or ``None``.

    Streaming swaps each weight in a forward pre-hook of the layer's own module, so it needs
    an ``nn.Module`` whose layers are submodules (not TorchScript, an exported program or an
    ONNX graph), and no transformed state (transforms and AdaRound / GPTQ rewrite weights of
    the whole model before the pass).
    """
    if handle.flavour != "nn":
        return f"a {handle.flavour} model has no per-layer modules to hook"
    if rounding_layers(handle, config):
        return "AdaRound / GPTQ rounding needs the whole model prepared"
    if (state is not None and not state.empty) or (state is None and config.transforms):
        return "transforms need the whole model prepared"
    return None


def streams(
    handle: ModelHandle,
    config: ModelConfig,
    cache: WeightCache,
    state: Transformed | None = None,
) -> bool:
    """Whether ``config`` is applied streamed (``apply_config(stream=True)``): it can be
    (:func:`stream_refusal`) and its fake-quantized weights do not fit ``cache``'s budget
    (:func:`quantized_bytes` > ``cache.max_bytes``) — the policy of
    :func:`~quantviz.eval.evaluate.evaluate` and :func:`~quantviz.eval.debug.debug`."""
    return (
        stream_refusal(handle, config, state) is None
        and quantized_bytes(handle, config) > cache.max_bytes
    )


def needs_calibration(handle: ModelHandle, config: ModelConfig) -> list[str]:
    """The layers whose activation spec is static (needs calibration statistics)."""
    out = []
    for fqn in handle.fqns:
        act = config.resolve(fqn).activation
        if act is not None and not act.dynamic:
            out.append(fqn)
    return out


def prepare_weights(
    handle: ModelHandle,
    config: ModelConfig,
    cache: WeightCache,
    state: Transformed | None = None,
    prepared: Mapping[str, WeightEntry] | None = None,
) -> Generator[Progress, None, dict[str, WeightEntry]]:
    """Quantize (or fetch from ``prepared`` or ``cache``) every quantized layer's weight;
    yields per layer.

    With ``state`` (from :func:`quantviz.eval.transforms.prepare_transforms`) the weights are
    the transformed ones and AdaRound / GPTQ layers take their rounded weights from it.
    """
    _check_state(handle, config, state)
    todo = [(f, config.resolve(f).weight) for f in handle.fqns]
    todo = [(f, s) for f, s in todo if s is not None]
    out: dict[str, WeightEntry] = {}
    tag = None if state is None or state.empty else state.key
    for i, (fqn, spec) in enumerate(todo, start=1):
        done = None if prepared is None else prepared.get(fqn)
        if done is not None:
            out[fqn] = done
            yield Progress(i, len(todo), "quantize")
            continue
        lay = handle.layer(fqn)  # quantization reads output channels on axis 0 (Conv1D: .t())
        w = handle.quant_weight(fqn) if state is None else lay.to_quant(state.weight(handle, fqn))
        if spec.rounding == "nearest" or state is None or (fqn, spec) not in state.rounded:
            # nearest, or a layer AdaRound / GPTQ cannot learn (rounding_layers)
            out[fqn] = cache.get(fqn, spec.with_(rounding="nearest"), w, tag)
        else:
            dq = lay.to_quant(state.rounded[(fqn, spec)])
            out[fqn] = _rounded_entry(fqn, spec, w, dq, cache, tag)
        yield Progress(i, len(todo), "quantize")
    return out


def _rounded_entry(
    fqn: str, spec: QuantSpec, w: torch.Tensor, dq: torch.Tensor, cache: WeightCache, tag: Any
) -> WeightEntry:
    """A :class:`WeightEntry` for an AdaRound / GPTQ weight (same grid as nearest)."""
    near = cache.get(fqn, spec.with_(rounding="nearest"), w, tag)
    t0 = time.perf_counter()
    wf = w.detach().to(torch.float64)
    err = float((wf - dq.to(torch.float64)).pow(2).mean())
    sig = float(wf.pow(2).mean())
    sqnr = float("inf") if err == 0 else 10.0 * float(torch.log10(torch.tensor(sig / err)))
    return WeightEntry(
        dequantized=dq.to(w.device) if dq.device != w.device else dq,
        sqnr_db=sqnr,
        mse=err,
        bits_per_value=near.bits_per_value,
        clipped_fraction=near.clipped_fraction,
        seconds=near.seconds + time.perf_counter() - t0,
    )


def _check_state(handle: ModelHandle, config: ModelConfig, state: Transformed | None) -> None:
    if state is None:
        if needs_transforms(handle, config):
            what = ", ".join(config.transform_names) or "rounding"
            raise ValueError(
                f"config: {what} must be prepared first "
                "(quantviz.eval.transforms.prepare_transforms, or use evaluate())"
            )
        return
    for fqn, spec in rounding_layers(handle, config):
        if (fqn, spec) not in state.rounded:
            raise ValueError(
                f"layer {fqn}: rounding {spec.rounding} has not been computed for this spec "
                "(prepare_transforms with this config)"
            )


@dataclass
class AppliedConfig:
    """What :func:`apply_config` did: per-layer weight entries and the activation hooks.

    With ``stream=True``, ``weights`` is empty and ``streamed`` gets each layer's numbers
    once its module has run (the entry's ``dequantized`` is a ``meta`` tensor: shape and
    dtype, no storage); ``stream_seconds`` adds up the time spent in the streaming hooks
    (quantizing, or fetching from the cache) during the forward passes.
    """

    weights: dict[str, WeightEntry]
    activations: dict[str, str]  # fqn -> "static" | "dynamic"
    quantize_seconds: float
    streamed: dict[str, WeightEntry] = field(default_factory=dict)
    stream_seconds: float = 0.0


class StreamQuantizeError(ValueError):
    """A layer's weight failed to quantize inside a streaming hook (names the layer)."""


def _dynamic_hook(fqn: str, spec: QuantSpec) -> Callable[[torch.Tensor], torch.Tensor]:
    from quantviz.core import fake_quantize

    def hook(x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            return x
        try:
            return fake_quantize(x, spec)
        except ValueError as exc:
            raise ValueError(f"layer {fqn}: activation: {exc}") from None

    hook.dynamic_spec = spec  # type: ignore[attr-defined]  # what an ONNX model refuses
    return hook


def _static_hook(fq: FittedQuantizer) -> Callable[[torch.Tensor], torch.Tensor]:
    def hook(x: torch.Tensor) -> torch.Tensor:
        return fq(x) if x.is_floating_point() else x

    hook.quantizer = fq  # type: ignore[attr-defined]  # an ONNX model inserts Q/DQ from it
    return hook


def _parameters(handle: ModelHandle, fqn: str) -> list[torch.nn.Parameter]:
    """Layer ``fqn``'s weight parameter and every tied one that is a separate object."""
    from quantviz.model.handle import _direct_params, _submodule

    main = handle.weight(fqn)
    out = [main]
    for qual in handle.layer(fqn).tied:
        mod_fqn, _, pname = qual.rpartition(".")
        p = _direct_params(_submodule(handle.module, mod_fqn)).get(pname)
        if isinstance(p, torch.nn.Parameter) and all(p is not q for q in out):
            out.append(p)
    return out


class ParameterSwap:
    """Parameters given other tensors for a while (see :func:`swapped_parameters`)."""

    def __init__(self) -> None:
        self._done: list[tuple[torch.nn.Parameter, torch.Tensor]] = []

    def keep(self, p: torch.nn.Parameter) -> torch.Tensor:
        """Remember ``p``'s current tensor (put back on exit); returns it."""
        self._done.append((p, p.data))
        return p.data

    def put(self, p: torch.nn.Parameter, t: torch.Tensor) -> None:
        """Give ``p`` the tensor ``t`` (its current one is put back on exit)."""
        self.keep(p)
        p.data = t

    def put_layer(self, handle: ModelHandle, fqn: str, t: torch.Tensor) -> None:
        """Give layer ``fqn``'s weight and every tied parameter (a separate object that
        shares it, e.g. an ``lm_head`` tied to the embedding) the tensor ``t``."""
        for p in _parameters(handle, fqn):
            self.put(p, t)

    def restore(self) -> None:
        """Every parameter gets its first remembered tensor back (the very same storage)."""
        done, self._done = self._done, []
        for p, orig in reversed(done):
            p.data = orig


@contextmanager
def swapped_parameters() -> Iterator[ParameterSwap]:
    """A :class:`ParameterSwap` whose parameters get their original tensors back on exit,
    normal or by an exception (what :func:`apply_config` and
    :func:`quantviz.eval.qat.swapped_weights` share)."""
    swap = ParameterSwap()
    try:
        yield swap
    finally:
        swap.restore()


@contextmanager
def apply_config(
    handle: ModelHandle,
    config: ModelConfig,
    *,
    stats: Mapping[str, LayerStats] | None = None,
    cache: WeightCache | None = None,
    state: Transformed | None = None,
    prepared: Mapping[str, WeightEntry] | None = None,
    stream: bool = False,
) -> Iterator[AppliedConfig]:
    """Fake-quantize ``handle``'s model under ``config`` inside a ``with`` block.

    ``stats`` (fqn -> :class:`quantviz.model.capture.LayerStats`, e.g. from
    :func:`quantviz.model.capture.capture_stats` on calibration data) is required for the
    layers with a static activation spec. ``cache`` reuses fake-quantized weights across
    calls. ``state`` (from :func:`quantviz.eval.transforms.prepare_transforms`; required when
    ``config`` has transforms or AdaRound / GPTQ rounding) puts the transformed weights and
    inserted operations in first. ``prepared`` (what :func:`prepare_weights` returned for
    this ``config``) is used as is: a model larger than the cache is then not quantized
    twice. On exit — normal or by an exception — every parameter gets its original tensor
    back and every hook is removed: the float model is exactly as before.

    ``stream=True`` quantizes each layer's weight when its module runs (a forward pre-hook)
    and puts the float weight back when it returns, so only one layer's fake-quantized
    weight exists at a time besides what ``cache`` keeps (pass ``WeightCache(max_bytes=0)``
    for none): a model never has a second full copy of its weights. Every forward pass then
    re-quantizes the layers the cache does not hold. The cache keeps the quantized weights
    only when all of them fit its budget (:func:`quantized_bytes` <= ``max_bytes``): a larger
    model would only evict its own layers before the next pass needs them, so nothing is
    kept. ``AppliedConfig.weights`` is empty; ``AppliedConfig.streamed`` gets each layer's
    numbers as it runs. Tied weights (an ``lm_head`` sharing the embedding) are quantized
    once per block. It needs what :func:`stream_refusal` checks: an ``nn.Module`` model and
    no transforms or AdaRound / GPTQ (``state``). A weight the model reads outside its
    layer's module (``F.linear(x, self.fc.weight)`` elsewhere) stays float in that use; the
    layer is then missing from ``streamed`` (:func:`quantviz.eval.evaluate` re-runs such a
    model with every weight applied).

    Raises ``ValueError`` for override keys matching no layer, a static activation spec
    without statistics for its layer, or a config applied while another one is active.
    """
    check_config(handle, config)
    if handle.meta.get(_APPLIED_FLAG):
        raise ValueError(f"{handle.name}: a config is already applied to this model")
    cache = cache if cache is not None else WeightCache()
    t0 = time.perf_counter()
    # everything that can fail is computed before the model is touched
    entries: dict[str, WeightEntry] = {}
    if stream:
        why = stream_refusal(handle, config, state)
        if why is not None:
            raise ValueError(f"stream: {why}")
    gen = prepare_weights(handle, config, cache, state, prepared)
    while not stream:
        try:
            next(gen)
        except StopIteration as stop:
            entries = stop.value
            break
    hooks: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    kinds: dict[str, str] = {}
    for fqn in handle.fqns:
        act = config.resolve(fqn).activation
        if act is None:
            continue
        if act.dynamic:
            hooks[fqn], kinds[fqn] = _dynamic_hook(fqn, act), "dynamic"
            continue
        st = None if stats is None else stats.get(fqn)
        if st is None:
            raise ValueError(
                f"layer {fqn}: activation: a static spec needs calibration statistics of "
                "this layer's input (pass stats=, or use dynamic: true)"
            )
        hooks[fqn], kinds[fqn] = _static_hook(cache.activation(fqn, act, st)), "static"
    q_seconds = time.perf_counter() - t0

    swap = ParameterSwap()
    removers: list[Callable[[], None]] = []
    applied = AppliedConfig(entries, kinds, q_seconds)
    handle.meta[_APPLIED_FLAG] = True
    outer = transformed(handle, state)
    try:
        outer.__enter__()
        for fqn, entry in entries.items():
            lay = handle.layer(fqn)
            swap.put_layer(handle, fqn, lay.to_stored(entry.dequantized))  # [in, out]: Conv1D
        if stream:
            keep = quantized_bytes(handle, config) <= cache.max_bytes
            removers.extend(_streaming_hooks(handle, config, cache, swap, applied, keep))
        for fqn, hook in hooks.items():
            removers.append(handle.add_hooks(fqn, pre=hook))
        yield applied
    finally:
        for r in reversed(removers):
            r()
        swap.restore()
        try:
            outer.__exit__(None, None, None)
        finally:
            handle.meta.pop(_APPLIED_FLAG, None)


def _streaming_hooks(
    handle: ModelHandle,
    config: ModelConfig,
    cache: WeightCache,
    swap: ParameterSwap,
    applied: AppliedConfig,
    keep: bool,
) -> list[Callable[[], None]]:
    """Forward hooks swapping each layer's quantized weight in for the duration of its
    module's call (see :func:`apply_config`); ``swap`` keeps every parameter's float
    tensor first, so the caller restores them whatever happens. Each layer's numbers go to
    ``applied.streamed``, the hooks' time to ``applied.stream_seconds``; ``keep``: store
    the quantized weights in ``cache``."""
    from quantviz.model.handle import _submodule

    removers: list[Callable[[], None]] = []
    for fqn in handle.fqns:
        spec = config.resolve(fqn).weight
        if spec is None:
            continue
        lay = handle.layer(fqn)
        params = _parameters(handle, fqn)
        floats = [swap.keep(p) for p in params]
        pinned: dict[str, torch.Tensor] = {}  # a tied weight: quantized once, kept
        active = [0]  # modules of this layer inside their forward

        def pre(
            _m: torch.nn.Module,
            _a: tuple,
            fqn: str = fqn,
            spec: QuantSpec = spec,
            lay: Any = lay,
            params: list[torch.nn.Parameter] = params,
            floats: list[torch.Tensor] = floats,
            pinned: dict[str, torch.Tensor] = pinned,
            active: list[int] = active,
        ) -> None:
            active[0] += 1
            if active[0] > 1:
                return
            t0 = time.perf_counter()
            stored = pinned.get(fqn)
            if stored is None:
                for p, f in zip(params, floats, strict=True):
                    p.data = f  # quantize the float weight
                w = handle.quant_weight(fqn)
                try:
                    if keep or fqn not in applied.streamed:
                        e = cache.get(fqn, spec, w, keep=keep)
                        dq = e.dequantized
                        meta = torch.empty(dq.shape, dtype=dq.dtype, device="meta")
                        applied.streamed[fqn] = replace(e, dequantized=meta)
                    else:  # its numbers are known: the weight only (no error metrics)
                        dq = cache.dequantized(fqn, spec, w)
                except ValueError as exc:
                    raise StreamQuantizeError(str(exc)) from None
                stored = lay.to_stored(dq)
                if lay.tied:
                    pinned[fqn] = stored
            for p in params:
                p.data = stored
            applied.stream_seconds += time.perf_counter() - t0

        def post(
            _m: torch.nn.Module,
            _a: tuple,
            _o: Any,
            params: list[torch.nn.Parameter] = params,
            floats: list[torch.Tensor] = floats,
            active: list[int] = active,
        ) -> None:
            active[0] -= 1
            if active[0] == 0:
                for p, f in zip(params, floats, strict=True):
                    p.data = f

        mods = [_submodule(handle.module, lay.module_fqn)]
        mods += [_submodule(handle.module, q.rpartition(".")[0]) for q in lay.tied]
        for m in mods:
            removers.append(m.register_forward_pre_hook(pre).remove)
            removers.append(m.register_forward_hook(post).remove)
    return removers
