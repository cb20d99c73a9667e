"""Evaluate a ``ModelConfig`` on a model and data set: a generator that can stop at any yield.

``evaluate(...)`` yields :class:`~quantviz.eval.results.Progress` events (per batch of the
float baseline, the calibration and the quantized forward pass; per layer of weight
quantization) and returns an :class:`~quantviz.eval.results.EvalResult` — read it from
``StopIteration.value`` or drive the generator with :func:`run`. Closing the generator
(``gen.close()``) at any yield restores the float model at once.

Failures of the user's model or data are :class:`~quantviz.eval.results.EvalError` naming
the model, the stage and the samples: an exception raised inside the model's forward, an
output without a class dimension, NaN/inf outputs (with the layer where they first appear,
found by re-running the failing batch with forward hooks). A model that refuses batches
larger than one (a ``.pt2`` exported with a static batch of 1, say) is evaluated one sample
at a time, with a warning on the ``quantviz`` logger.

A causal language model (``handle.is_causal_lm``) is measured on token data by perplexity
(lower is better; :class:`~quantviz.data.PerplexityAccumulator`), with the KL divergence and
top-1 agreement of its next-token distributions to the float model's; its batches are
capped so that one batch's logits stay under :data:`LM_LOGITS_BYTES`.

Memory: when the config's fake-quantized weights fit the weight cache's budget
(:func:`~quantviz.eval.apply.quantized_bytes` <= ``cache.max_bytes``, 1 GiB by default) they
are quantized up front, kept in the cache and swapped in for the pass — later evaluations
and every batch reuse them. A larger model is evaluated streamed
(``apply_config(stream=True)``): each layer's weight is quantized when its module runs and
the float weight is put back when it returns, so at most one layer's quantized weight exists
besides the float model — every batch re-quantizes (a 4 x 128-token TinyLlama batch does it
once). Not streamed, whatever the size: transforms and AdaRound / GPTQ (the transformed
state holds the whole model's weights) and TorchScript / exported / ONNX models (no
per-layer modules). The results are bit-identical either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from quantviz.core import ModelConfig
from quantviz.core.defaults import FLOAT_CONFIG
from quantviz.core.memory import bops as count_bops
from quantviz.core.memory import float_model_bytes, layer_bytes, model_bytes
from quantviz.eval.apply import (
    StreamQuantizeError,
    WeightCache,
    WeightEntry,
    apply_config,
    check_config,
    needs_calibration,
    prepare_weights,
    streams,
)
from quantviz.eval.forward import (
    check_data,
    data_name,
    first_batch,
    forward,
    model_device,
    one_line,
    update_metrics,
)
from quantviz.eval.results import STAGES, Baseline, EvalError, EvalResult, Progress
from quantviz.eval.transforms import needs_transforms, prepare_transforms, transformed

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = [
    "LM_LOGITS_BYTES",
    "batch_size_for",
    "calibrate",
    "check_device",
    "compute_baseline",
    "evaluate",
    "run",
    "size_of",
]

T = TypeVar("T")

log = logging.getLogger("quantviz.eval")

#: largest float32 logits of one batch of a causal LM ([B, T, V]); the batch shrinks to fit
LM_LOGITS_BYTES = 256 << 20


def batch_size_for(handle: ModelHandle, data: EvalData, batch_size: int) -> int:
    """``batch_size``, capped for a causal LM so one batch's logits fit :data:`LM_LOGITS_BYTES`."""
    if not getattr(handle, "is_causal_lm", False) or data.x.dim() != 2:
        return batch_size
    vocab = int(handle.meta.get("vocab_size") or 1)
    per_seq = 4 * vocab * int(data.x.shape[1])
    return max(1, min(batch_size, LM_LOGITS_BYTES // max(per_seq, 1)))


def run(gen: Generator[Any, Any, T], on_event: Callable[[Any], None] | None = None) -> T:
    """Drive ``gen`` to completion and return its return value.

    ``on_event`` (optional) receives every yielded event, e.g. to update a progress bar.
    """
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(ev)


def _tagged(
    gen: Generator[Progress, None, T], point: int, points: int
) -> Generator[Progress, None, T]:
    """Relay ``gen``'s progress with the sweep position set; return its value; close it."""
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                return stop.value
            yield Progress(p.done, p.total, p.stage, point, points)
    finally:
        gen.close()


def check_device(device: str) -> torch.device:
    """``torch.device`` for ``cpu`` / ``cuda``; ``ValueError`` when CUDA is not available."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: must be cpu or cuda, got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: must be cpu or cuda, got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: CUDA is not available on this machine")
    return dev


def _batches(x: torch.Tensor, batch_size: int) -> Iterator[tuple[int, int]]:
    for i in range(0, int(x.shape[0]), batch_size):
        yield i, min(i + batch_size, int(x.shape[0]))


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer, got {batch_size!r}")


# ---------------------------------------------------------------------------------------
# the stages
# ---------------------------------------------------------------------------------------
def compute_baseline(
    handle: ModelHandle, data: EvalData, *, batch_size: int = 256
) -> Generator[Progress, None, Baseline]:
    """Run the float model over ``data.x`` once: its metric and outputs, yielding per batch.

    Raises :class:`EvalError` when the model fails, returns outputs without classes or
    NaN/inf values (naming the layer where they first appear). A model that refuses
    batches larger than one is run one sample at a time (``Baseline.batch_limit`` is 1).
    """
    from quantviz.data import make_accumulator

    _check_batch_size(batch_size)
    check_data(data)
    batch_size = batch_size_for(handle, data, batch_size)
    t0 = time.perf_counter()
    stage = "baseline (float model)"
    with torch.no_grad():
        bs, ready = first_batch(handle, data, batch_size, stage)
    acc = make_accumulator(handle.task, handle.num_classes)
    outs: list[torch.Tensor] = []
    spans = list(_batches(data.x, bs))
    with torch.no_grad():
        for i, (a, b) in enumerate(spans, start=1):
            out = forward(handle, data, a, b, stage, False, ready.pop(a, None))
            outs.append(out)
            update_metrics(acc, out, data, a, b, out, handle, stage)
            yield Progress(i, len(spans), "baseline")
    res = acc.result()
    return Baseline.build(
        handle.module,
        data.x,
        res["metric"],
        float(res["value"]),
        torch.cat(outs),
        time.perf_counter() - t0,
        res.get("top5"),
        batch_limit=bs if bs < batch_size else None,
        higher_is_better=bool(res.get("higher_is_better", True)),
        n_tokens=res.get("n_tokens"),
    )


def calibrate(
    handle: ModelHandle,
    data: EvalData,
    fqns: list[str],
    stats: MutableMapping[str, LayerStats],
    *,
    batch_size: int = 256,
) -> Generator[Progress, None, MutableMapping[str, LayerStats]]:
    """Add to ``stats`` the activation statistics of the layers in ``fqns`` it lacks.

    One float forward pass over ``data.calib_x`` (only if something is missing); yields per
    batch. Statistics are added only when the pass completes, so a stopped calibration
    never leaves partial statistics behind. The model failing is an :class:`EvalError`.
    """
    from quantviz.model.capture import StatsCollector

    missing = [f for f in fqns if f not in stats]
    if not missing:
        return stats
    _check_batch_size(batch_size)
    calib = data.calib_x
    if calib is None or int(calib.shape[0]) == 0:
        raise ValueError(f"{data_name(data)}: no calibration inputs (calib_x)")
    if handle.meta.get("static_batch"):  # e.g. an ONNX file exported with a batch of 1
        batch_size = 1
    spans = list(_batches(calib, batch_size))
    i = 0
    try:
        collector = StatsCollector(handle, missing, outputs=False)  # inputs are quantized
        gen = collector.run((calib[a:b] for a, b in spans), total=len(spans))
        for i, n in gen:
            yield Progress(i, n or len(spans), "calibrate")
    except Exception as exc:
        a, b = spans[min(i, len(spans) - 1)]
        raise EvalError(
            handle.source,
            f"calibrate (float model, calibration samples {a}-{b - 1} of {data_name(data)})",
            one_line(exc),
        ) from exc
    stats.update(collector.stats)
    return stats


def size_of(handle: ModelHandle, config: ModelConfig) -> tuple[float, float]:
    """``(model_bytes, float_bytes)`` of ``handle`` under ``config``.

    Parameters and buffers outside the quantizable layers count at their own dtype.
    """
    float_total = float(handle.float_bytes)
    w_bytes = _weight_dtype_bytes(handle)
    layers_float = float_model_bytes(handle.layers, weight_dtype_bytes=w_bytes)
    other = max(float_total - layers_float, 0.0)
    return (
        model_bytes(handle.layers, config, other_bytes=other, weight_dtype_bytes=w_bytes),
        float_total,
    )


def _weight_dtype_bytes(handle: ModelHandle) -> int:
    for fqn in handle.fqns:
        return int(handle.weight(fqn).element_size())
    return 4


def _prepared(
    handle: ModelHandle,
    config: ModelConfig,
    cache: WeightCache,
    state: Any,
    point: int,
    points: int,
) -> Generator[Progress, None, dict[str, WeightEntry]]:
    try:
        return (yield from _tagged(prepare_weights(handle, config, cache, state), point, points))
    except ValueError as exc:
        raise EvalError(handle.source, "quantize", str(exc)) from exc


def _quantized_pass(
    handle: ModelHandle,
    data: EvalData,
    config: ModelConfig,
    bs: int,
    baseline: Baseline,
    stats: MutableMapping[str, LayerStats],
    cache: WeightCache,
    state: Any,
    entries: dict[str, WeightEntry],
    stream: bool,
    point: int,
    points: int,
) -> Generator[Progress, None, tuple[Any, Any]]:
    """Run ``data.x`` through the model under ``config``; the metric accumulator and the
    :class:`~quantviz.eval.apply.AppliedConfig`. Yields per batch."""
    from quantviz.data import make_accumulator

    acc = make_accumulator(handle.task, handle.num_classes)
    spans = list(_batches(data.x, bs))
    ref = baseline.outputs
    stage = "forward (quantized model)"
    try:
        applying = apply_config(
            handle, config, stats=stats, cache=cache, state=state, prepared=entries, stream=stream
        )
    except ValueError as exc:
        raise EvalError(handle.source, "quantize", str(exc)) from exc
    with torch.no_grad(), applying as applied:
        for i, (a, b) in enumerate(spans, start=1):
            try:
                out = forward(handle, data, a, b, stage, True)
            except EvalError as exc:
                if isinstance(exc.__cause__, StreamQuantizeError):  # raised in a stream hook
                    raise EvalError(handle.source, "quantize", str(exc.__cause__)) from exc
                raise
            update_metrics(acc, out, data, a, b, ref[a:b], handle, stage)
            yield Progress(i, len(spans), "forward", point, points)
    return acc, applied


class _Clock:
    """Wall time split into named stages: each :meth:`lap` charges the time since the last."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.timings = dict.fromkeys(STAGES, 0.0)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] += now - self.last
        self.last = now

    @property
    def seconds(self) -> float:
        return self.last - self.start


def evaluate(
    handle: ModelHandle,
    data: EvalData,
    config: ModelConfig,
    *,
    stats: MutableMapping[str, LayerStats] | None = None,
    cache: WeightCache | None = None,
    batch_size: int = 256,
    baseline: Baseline | None = None,
    name: str = "",
    progress_point: tuple[int, int] = (0, 1),
) -> Generator[Progress, None, EvalResult]:
    """Evaluate ``config`` on ``handle`` over ``data``; a generator, see the module doc.

    ``stats`` (fqn -> LayerStats) is filled with calibration statistics on first need —
    only when ``config`` has static activation specs — and reused by later calls.
    ``cache`` (a :class:`WeightCache`) reuses fake-quantized weights; ``baseline`` (from an
    earlier result's run, see :func:`compute_baseline`) skips the float pass when it belongs
    to this model and data. ``progress_point`` is ``(index, count)`` of this evaluation
    inside a sweep, copied into every :class:`Progress`.

    Raises ``ValueError`` before any work for an invalid batch size, a config naming no
    layer of the model or not applying to some layer's weight shape, or empty data; and
    :class:`EvalError` when the model fails on the data (see the module doc). The result's
    ``timings`` (every stage of :data:`~quantviz.eval.results.STAGES`) add up to its
    ``seconds``.
    """
    clock = _Clock()
    _check_batch_size(batch_size)
    check_config(handle, config)
    check_data(data)
    cache = cache if cache is not None else WeightCache()
    stats = stats if stats is not None else {}
    point, points = progress_point
    clock.lap("check")

    # 1. the float baseline (once per model and data)
    if baseline is None or not baseline.matches(handle.module, data.x):
        baseline = yield from _tagged(
            compute_baseline(handle, data, batch_size=batch_size), point, points
        )
        clock.lap("baseline")
    assert baseline is not None
    batch_size = batch_size_for(handle, data, batch_size)
    bs = min(batch_size, baseline.batch_limit or batch_size)

    # 2. transforms and AdaRound / GPTQ rounding (cached per transform list and data)
    state = None
    if needs_transforms(handle, config):
        try:
            state = yield from _tagged(
                prepare_transforms(
                    handle, config, data.calib_x, batch_size=bs, store=cache.transforms
                ),
                point,
                points,
            )
        except ValueError as exc:
            raise EvalError(handle.source, "transform", str(exc)) from exc
        clock.lap("transform")
        if state is not None and not state.empty:
            stats = state.stats  # activation ranges of the transformed model

    # 3. calibration statistics, only for static activation specs
    static = needs_calibration(handle, config)
    if static:
        with transformed(handle, state):
            yield from _tagged(calibrate(handle, data, static, stats, batch_size=bs), point, points)
        clock.lap("calibrate")

    # 4. weights (cached per layer and spec), unless streamed through the forward pass
    stream = streams(handle, config, cache, state)
    entries: dict[str, WeightEntry] = {}
    if not stream:
        entries = yield from _prepared(handle, config, cache, state, point, points)
    clock.lap("quantize")

    # 5. the quantized forward pass
    acc, applied = yield from _quantized_pass(
        handle, data, config, bs, baseline, stats, cache, state, entries, stream, point, points
    )
    clock.lap("forward")
    if stream:  # the hooks quantized inside the pass: charge that to "quantize"
        moved = min(applied.stream_seconds, clock.timings["forward"])
        clock.timings["forward"] -= moved
        clock.timings["quantize"] += moved
        entries = applied.streamed
        quantized = [f for f in handle.fqns if config.resolve(f).weight is not None]
        unreached = [f for f in quantized if f not in entries]
        if unreached:
            # a weight the model reads outside its layer's module stayed float there (or
            # the layer never ran): run again with every weight applied, as without stream
            log.warning(
                "%s: layers %s did not run as modules in the streamed pass; evaluating "
                "again with every weight quantized up front",
                handle.name,
                ", ".join(unreached[:5]) + (" ..." if len(unreached) > 5 else ""),
            )
            entries = yield from _prepared(handle, config, cache, state, point, points)
            clock.lap("quantize")
            acc, applied = yield from _quantized_pass(
                handle,
                data,
                config,
                bs,
                baseline,
                stats,
                cache,
                state,
                entries,
                False,
                point,
                points,
            )
            clock.lap("forward")
    res = acc.result()

    m_bytes, f_bytes = size_of(handle, config)
    w_bytes = _weight_dtype_bytes(handle)
    layers = []
    for lay in handle.layers:
        lc = config.resolve(lay.fqn)
        e = entries.get(lay.fqn)
        layers.append(
            {
                "fqn": lay.fqn,
                "bytes": layer_bytes(lay, lc, weight_dtype_bytes=w_bytes),
                "weight_sqnr_db": None if e is None else e.sqnr_db,
                "bits_per_value": 8.0 * w_bytes if e is None else e.bits_per_value,
                "scheme": lc.short(),
            }
        )
        if state is not None:
            layers[-1]["notes"] = list(state.notes.get(lay.fqn, []))
            if lay.fqn in state.rounding_info:
                layers[-1]["rounding"] = dict(state.rounding_info[lay.fqn])
    bops = int(count_bops(handle.layers, config))
    float_bops = int(count_bops(handle.layers, FLOAT_CONFIG))
    clock.lap("metrics")
    return EvalResult(
        metric=res["metric"],
        value=float(res["value"]),
        baseline=baseline.value,
        model_bytes=m_bytes,
        float_bytes=f_bytes,
        compression=f_bytes / m_bytes if m_bytes > 0 else float("inf"),
        bops=bops,
        float_bops=float_bops,
        layers=layers,
        seconds=clock.seconds,
        timings=dict(clock.timings),
        name=name,
        config=config,
        top1_agreement=res.get("top1_agreement"),
        cosine=res.get("cosine"),
        kl=res.get("kl"),
        top5=res.get("top5"),
        n_samples=int(res["n"]),
        device=str(model_device(handle)),
        batch_size=bs,
        higher_is_better=bool(res.get("higher_is_better", True)),
        n_tokens=res.get("n_tokens"),
    )
