"""Evaluate a ``ModelConfig`` on a model and data set: a generator that can stop at any yield.

``evaluate(...)`` yields :class:`~quantviz.eval.results.Progress` events (per batch of the
float baseline, the calibration and the quantized forward pass; per layer of weight
quantization) and returns an :class:`~quantviz.eval.results.EvalResult` — read it from
``StopIteration.value`` or drive the generator with :func:`run`. Closing the generator
(``gen.close()``) at any yield restores the float model at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from quantviz.core import LayerConfig, ModelConfig
from quantviz.core.memory import bops as count_bops
from quantviz.core.memory import float_model_bytes, layer_bytes, model_bytes
from quantviz.eval.apply import (
    WeightCache,
    apply_config,
    check_config,
    needs_calibration,
    prepare_weights,
)
from quantviz.eval.results import Baseline, EvalResult, Progress

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = [
    "calibrate",
    "check_device",
    "compute_baseline",
    "evaluate",
    "run",
    "size_of",
]

T = TypeVar("T")


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


def _model_device(handle: ModelHandle) -> torch.device:
    return handle.example_input.device


def _batches(x: torch.Tensor, batch_size: int) -> Iterator[tuple[int, int]]:
    for i in range(0, int(x.shape[0]), batch_size):
        yield i, min(i + batch_size, int(x.shape[0]))


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer, got {batch_size!r}")


def _output(out: Any) -> torch.Tensor:
    """The tensor output of a forward pass (first tensor of a tuple / dict)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, torch.Tensor):
                return o
    raise ValueError(f"model output: expected a tensor, got {type(out).__name__}")


def _forward(handle: ModelHandle, xb: torch.Tensor) -> torch.Tensor:
    dev = _model_device(handle)
    out = _output(handle.module(xb.to(dev, non_blocking=True)))
    return out.detach().float().cpu()


def compute_baseline(
    handle: ModelHandle, data: EvalData, *, batch_size: int = 256
) -> Generator[Progress, None, Baseline]:
    """Run the float model over ``data.x`` once: its metric and outputs, yielding per batch."""
    from quantviz.data import MetricAccumulator

    _check_batch_size(batch_size)
    t0 = time.perf_counter()
    acc = MetricAccumulator(handle.num_classes)
    outs: list[torch.Tensor] = []
    spans = list(_batches(data.x, batch_size))
    with torch.no_grad():
        for i, (a, b) in enumerate(spans, start=1):
            out = _forward(handle, data.x[a:b])
            outs.append(out)
            acc.update(out, None if data.y is None else data.y[a:b], out)
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
    never leaves partial statistics behind.
    """
    from quantviz.model.capture import StatsCollector

    missing = [f for f in fqns if f not in stats]
    if not missing:
        return stats
    _check_batch_size(batch_size)
    calib = data.calib_x
    if calib is None or int(calib.shape[0]) == 0:
        raise ValueError(f"{getattr(data, 'name', 'data')}: no calibration inputs (calib_x)")
    spans = list(_batches(calib, batch_size))
    collector = StatsCollector(handle, missing, outputs=False)  # inputs are quantized
    gen = collector.run((calib[a:b] for a, b in spans), total=len(spans))
    for i, n in gen:
        yield Progress(i, n or len(spans), "calibrate")
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
    layer of the model, or data without labels and without a float reference.
    """
    t_start = time.perf_counter()
    _check_batch_size(batch_size)
    check_config(handle, config)
    if int(data.x.shape[0]) == 0:
        raise ValueError(f"{getattr(data, 'name', 'data')}: x: no samples")
    cache = cache if cache is not None else WeightCache()
    stats = stats if stats is not None else {}
    point, points = progress_point
    timings = {"baseline": 0.0, "calibrate": 0.0, "quantize": 0.0, "forward": 0.0}

    # 1. the float baseline (once per model and data)
    if baseline is None or not baseline.matches(handle.module, data.x):
        t0 = time.perf_counter()
        baseline = yield from _tagged(
            compute_baseline(handle, data, batch_size=batch_size), point, points
        )
        timings["baseline"] = time.perf_counter() - t0
    assert baseline is not None

    # 2. calibration statistics, only for static activation specs
    static = needs_calibration(handle, config)
    if static:
        t0 = time.perf_counter()
        yield from _tagged(
            calibrate(handle, data, static, stats, batch_size=batch_size), point, points
        )
        timings["calibrate"] = time.perf_counter() - t0

    # 3. weights (cached per layer and spec)
    t0 = time.perf_counter()
    entries = yield from _tagged(prepare_weights(handle, config, cache), point, points)
    timings["quantize"] = time.perf_counter() - t0

    # 4. the quantized forward pass
    from quantviz.data import MetricAccumulator

    acc = MetricAccumulator(handle.num_classes)
    spans = list(_batches(data.x, batch_size))
    ref = baseline.outputs
    t0 = time.perf_counter()
    with torch.no_grad(), apply_config(handle, config, stats=stats, cache=cache) as applied:
        timings["quantize"] += applied.quantize_seconds
        t0 = time.perf_counter()
        for i, (a, b) in enumerate(spans, start=1):
            out = _forward(handle, data.x[a:b])
            acc.update(out, None if data.y is None else data.y[a:b], ref[a:b])
            yield Progress(i, len(spans), "forward", point, points)
    timings["forward"] = time.perf_counter() - t0
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
    from quantviz.io import config_to_dict

    float_cfg = ModelConfig(default=LayerConfig(weight=None, activation=None))
    return EvalResult(
        metric=res["metric"],
        value=float(res["value"]),
        baseline=baseline.value,
        model_bytes=m_bytes,
        float_bytes=f_bytes,
        compression=f_bytes / m_bytes if m_bytes > 0 else float("inf"),
        bops=int(count_bops(handle.layers, config)),
        float_bops=int(count_bops(handle.layers, float_cfg)),
        layers=layers,
        seconds=time.perf_counter() - t_start,
        timings=timings,
        name=name,
        config=config_to_dict(config),
        top1_agreement=res.get("top1_agreement"),
        cosine=res.get("cosine"),
        kl=res.get("kl"),
        top5=res.get("top5"),
        n_samples=int(res["n"]),
        device=str(_model_device(handle)),
    )
