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
    WeightCache,
    apply_config,
    check_config,
    needs_calibration,
    prepare_weights,
)
from quantviz.eval.results import STAGES, Baseline, EvalError, EvalResult, Progress

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
log = logging.getLogger("quantviz.eval")


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


def _data_name(data: EvalData) -> str:
    return str(getattr(data, "name", "") or "data")


def _where(data: EvalData, a: int, b: int) -> str:
    return f"samples {a}-{b - 1} of {_data_name(data)}"


def _one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception from the user's model, on one line.

    TorchScript wraps the model's own exception in "The following operation failed in the
    TorchScript interpreter" and a trace of the scripted source; the last line is the
    exception itself (``builtins.ValueError: ...``), which is what the user needs.
    """
    text = str(exc)
    if "Traceback of TorchScript" in text or "TorchScript interpreter" in text:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if lines:
            last = lines[-1].removeprefix("builtins.")
            if ": " in last and last.split(": ", 1)[0].isidentifier():
                return _clip(last)
            text = last
    msg = " ".join(text.split())
    return _clip(f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__)


def _clip(msg: str, limit: int = 400) -> str:
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


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


def _check_output(out: torch.Tensor, n: int) -> None:
    """``ValueError`` for an output the metrics cannot read (no samples or no classes)."""
    shape = tuple(out.shape)
    if out.dim() == 0 or shape[0] != n:
        raise ValueError(
            f"model output: shape {list(shape)} for a batch of {n} samples (the first "
            "dimension must be the batch)"
        )
    if out.dim() >= 2 and shape[1] == 0:
        raise ValueError(
            f"model output: shape {list(shape)} has zero classes (dimension 1 is empty)"
        )
    if out.numel() == 0:
        raise ValueError(f"model output: shape {list(shape)} is empty")
    if out.is_complex():
        raise ValueError("model output: complex values are not supported")


def _raw_forward(handle: ModelHandle, xb: torch.Tensor) -> torch.Tensor:
    dev = _model_device(handle)
    out = _output(handle.module(xb.to(dev, non_blocking=True)))
    _check_output(out, int(xb.shape[0]))
    return out.detach().float().cpu()


def _forward(
    handle: ModelHandle,
    data: EvalData,
    a: int,
    b: int,
    stage: str,
    quantized: bool,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The model's output on samples ``a:b`` (``out`` if already computed), checked finite.

    :class:`EvalError` naming the stage and samples when the model raises, returns an
    output the metrics cannot read, or returns NaN/inf.
    """
    xb = data.x[a:b]
    if out is None:
        try:
            out = _raw_forward(handle, xb)
        except Exception as exc:  # the user's model raised: report it, do not crash
            raise EvalError(
                handle.source, f"{stage} ({_where(data, a, b)})", _one_line(exc)
            ) from exc
    if not bool(torch.isfinite(out).all()):
        raise EvalError(
            handle.source,
            f"{stage} ({_where(data, a, b)})",
            _non_finite_message(handle, xb, out, data, a, quantized),
        )
    return out


# ---------------------------------------------------------------------------------------
# where NaN / inf first appear
# ---------------------------------------------------------------------------------------
def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from _tensors(v)


def _has_non_finite(obj: Any) -> bool:
    return any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in _tensors(obj))


def _describe_module(handle: ModelHandle, name: str, cls: str) -> str:
    # re-assembled exported programs have no class names of their own
    kind = "" if cls in ("InterpreterModule", "GraphModule") else f" ({cls})"
    by_module = {lay.module_fqn: lay.fqn for lay in handle.layers}
    if name in by_module:
        return f"layer {by_module[name]}{kind}"
    return f"module {name}{kind}"


def locate_non_finite(handle: ModelHandle, xb: torch.Tensor) -> str | None:
    """Where non-finite values first appear when ``handle``'s model runs on ``xb``.

    Forward hooks on every submodule record the first module (in the order modules finish)
    whose output holds NaN/inf; a flat ``torch.fx`` graph (an exported program) is run node
    by node instead. ``None`` when the model cannot be observed (TorchScript) or the values
    do not reappear.
    """
    mod = handle.module
    dev = _model_device(handle)
    x = xb.to(dev)
    found: list[str] = []
    if handle.flavour == "torchscript":
        return None
    subs = [(n, m) for n, m in mod.named_modules() if n]
    if subs:
        removers = []
        for name, m in subs:

            def hook(m: torch.nn.Module, args: Any, out: Any, name: str = name) -> None:
                if found or not _has_non_finite(out):
                    return
                where = _describe_module(handle, name, type(m).__name__)
                if _has_non_finite(args):
                    found.append(f"the input of {where} (after its input quantization)")
                else:
                    found.append(f"the output of {where}")

            try:
                removers.append(m.register_forward_hook(hook))
            except (RuntimeError, AttributeError):  # pragma: no cover - not hookable
                continue
        try:
            with torch.no_grad():
                mod(x)
        except Exception:  # the hooks saw what they could
            pass
        finally:
            for r in removers:
                r.remove()
        if found:
            return found[0]
    if isinstance(mod, torch.fx.GraphModule):
        return _locate_in_graph(mod, x)
    return None


def _locate_in_graph(gm: torch.fx.GraphModule, x: torch.Tensor) -> str | None:
    found: list[str] = []

    class _Finder(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            out = super().run_node(n)
            skip = n.op in ("placeholder", "get_attr", "output")
            if not found and not skip and _has_non_finite(out):
                mod_stack = n.meta.get("nn_module_stack") or {}
                owner = list(mod_stack.values())[-1][0] if mod_stack else ""
                what = f"node {n.name} ({n.target})"
                found.append(f"{what} in module {owner}" if owner else what)
            return out

    try:
        with torch.no_grad():
            _Finder(gm).run(x)
    except Exception:
        pass
    return found[0] if found else None


def _non_finite_message(
    handle: ModelHandle, xb: torch.Tensor, out: torch.Tensor, data: EvalData, a: int, q: bool
) -> str:
    nan = int(torch.isnan(out).sum())
    inf = int(torch.isinf(out).sum())
    head = (
        f"the {'quantized' if q else 'float'} model's output holds {nan} NaN and {inf} inf "
        f"values of {out.numel()}"
    )
    if xb.is_floating_point() and not bool(torch.isfinite(xb).all()):
        bad = (~torch.isfinite(xb.reshape(xb.shape[0], -1))).any(dim=1).nonzero().flatten()
        return f"{head}: the input already does ({_data_name(data)}: sample {a + int(bad[0])})"
    where = locate_non_finite(handle, xb)
    bad_params = [
        n
        for n, p in handle.module.named_parameters()
        if p.is_floating_point() and not bool(torch.isfinite(p).all())
    ]
    tail = f"; non-finite parameters: {', '.join(bad_params[:5])}" if bad_params else ""
    if where is None:
        why = (
            "a TorchScript model cannot be observed layer by layer"
            if handle.flavour == "torchscript"
            else "they did not reappear when the batch was re-run"
        )
        return f"{head} (where they first appear is unknown: {why}){tail}"
    return f"{head}; they first appear in {where}{tail}"


# ---------------------------------------------------------------------------------------
# the stages
# ---------------------------------------------------------------------------------------
def _first_batch(
    handle: ModelHandle, data: EvalData, batch_size: int, stage: str
) -> tuple[int, dict[int, torch.Tensor]]:
    """The batch size to use and the outputs already computed (by first sample index).

    The first batch runs whole. If the model raises on it, its samples run one at a time:
    a sample that fails alone is the data's fault and raises :class:`EvalError` naming that
    sample; if all run, the model refuses batches (a ``.pt2`` exported with a fixed batch
    of 1, a model written for one sample) and the evaluation goes one sample at a time,
    logged as a warning on the ``quantviz.eval`` logger.
    """
    n = min(batch_size, int(data.x.shape[0]))
    if n <= 1:
        return batch_size, {}
    if handle.meta.get("static_batch"):
        log.warning(
            "%s: the model was exported with a fixed batch of 1; evaluating one sample at a time",
            handle.source,
        )
        return 1, {}
    try:
        return batch_size, {0: _raw_forward(handle, data.x[:n])}
    except Exception as exc:
        first = exc
    singles = {i: _forward(handle, data, i, i + 1, stage, False) for i in range(n)}
    log.warning(
        "%s: the model refuses a batch of %d (%s) but runs on each sample alone; "
        "evaluating one sample at a time",
        handle.source,
        n,
        _one_line(first),
    )
    return 1, singles


def compute_baseline(
    handle: ModelHandle, data: EvalData, *, batch_size: int = 256
) -> Generator[Progress, None, Baseline]:
    """Run the float model over ``data.x`` once: its metric and outputs, yielding per batch.

    Raises :class:`EvalError` when the model fails, returns outputs without classes or
    NaN/inf values (naming the layer where they first appear). A model that refuses
    batches larger than one is run one sample at a time (``Baseline.batch_limit`` is 1).
    """
    from quantviz.data import MetricAccumulator

    _check_batch_size(batch_size)
    t0 = time.perf_counter()
    stage = "baseline (float model)"
    with torch.no_grad():
        bs, ready = _first_batch(handle, data, batch_size, stage)
    acc = MetricAccumulator(handle.num_classes)
    outs: list[torch.Tensor] = []
    spans = list(_batches(data.x, bs))
    with torch.no_grad():
        for i, (a, b) in enumerate(spans, start=1):
            out = _forward(handle, data, a, b, stage, False, ready.pop(a, None))
            outs.append(out)
            _update(acc, out, data, a, b, out, handle, stage)
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
    )


def _update(
    acc: Any,
    out: torch.Tensor,
    data: EvalData,
    a: int,
    b: int,
    ref: torch.Tensor,
    handle: ModelHandle,
    stage: str,
) -> None:
    try:
        acc.update(out, None if data.y is None else data.y[a:b], ref)
    except (ValueError, RuntimeError, IndexError) as exc:
        raise EvalError(handle.source, f"{stage} ({_where(data, a, b)})", _one_line(exc)) from exc


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
        raise ValueError(f"{_data_name(data)}: no calibration inputs (calib_x)")
    spans = list(_batches(calib, batch_size))
    i = 0
    try:
        collector = StatsCollector(handle, missing)
        gen = collector.run((calib[a:b] for a, b in spans), total=len(spans))
        for i, n in gen:
            yield Progress(i, n or len(spans), "calibrate")
    except Exception as exc:
        a, b = spans[min(i, len(spans) - 1)]
        raise EvalError(
            handle.source,
            f"calibrate (float model, calibration samples {a}-{b - 1} of {_data_name(data)})",
            _one_line(exc),
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
    if int(data.x.shape[0]) == 0:
        raise ValueError(f"{_data_name(data)}: x: no samples")
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
    bs = min(batch_size, baseline.batch_limit or batch_size)

    # 2. calibration statistics, only for static activation specs
    static = needs_calibration(handle, config)
    if static:
        yield from _tagged(calibrate(handle, data, static, stats, batch_size=bs), point, points)
        clock.lap("calibrate")

    # 3. weights (cached per layer and spec)
    try:
        entries = yield from _tagged(prepare_weights(handle, config, cache), point, points)
    except ValueError as exc:
        raise EvalError(handle.source, "quantize", str(exc)) from exc
    clock.lap("quantize")

    # 4. the quantized forward pass
    from quantviz.data import MetricAccumulator

    acc = MetricAccumulator(handle.num_classes)
    spans = list(_batches(data.x, bs))
    ref = baseline.outputs
    stage = "forward (quantized model)"
    try:
        applying = apply_config(handle, config, stats=stats, cache=cache)
    except ValueError as exc:
        raise EvalError(handle.source, "quantize", str(exc)) from exc
    with torch.no_grad(), applying:
        clock.lap("quantize")
        for i, (a, b) in enumerate(spans, start=1):
            out = _forward(handle, data, a, b, stage, True)
            _update(acc, out, data, a, b, ref[a:b], handle, stage)
            yield Progress(i, len(spans), "forward", point, points)
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
        device=str(_model_device(handle)),
        batch_size=bs,
    )
