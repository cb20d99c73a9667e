"""Running the user's model on the user's data, and explaining why it failed.

Every forward pass of evaluation goes through :func:`forward`: an exception raised by the
model, an output the metrics cannot read (no batch dimension, zero classes) or NaN/inf
values become an :class:`~quantviz.eval.results.EvalError` naming the model, the stage and
the samples. Where NaN/inf first appear is found by re-running the failing batch with a
forward hook on every submodule (or node by node through a flat ``torch.fx`` graph):
:func:`locate_non_finite`. :func:`first_batch` finds models that refuse batches larger
than one and runs them one sample at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from quantviz.eval.results import EvalError

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.handle import ModelHandle

__all__ = [
    "OutputError",
    "check_data",
    "data_name",
    "first_batch",
    "forward",
    "locate_non_finite",
    "model_device",
    "model_output",
    "one_line",
    "update_metrics",
]

log = logging.getLogger("quantviz.eval")


def model_device(handle: ModelHandle) -> torch.device:
    return handle.example_input.device


def data_name(data: EvalData) -> str:
    return str(getattr(data, "name", "") or "data")


def check_data(data: EvalData) -> None:
    """``ValueError`` naming the data for inputs no forward pass can take."""
    for field_name in ("x", "y", "calib_x"):
        t = getattr(data, field_name, None)
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise ValueError(
                f"{data_name(data)}: {field_name}: expected a tensor, got {type(t).__name__}"
            )
        if t.layout != torch.strided:
            raise ValueError(
                f"{data_name(data)}: {field_name}: {t.layout} tensors are not supported; "
                "store a dense array"
            )
    if int(data.x.shape[0]) == 0:
        raise ValueError(f"{data_name(data)}: x: no samples")
    if data.y is not None and int(data.y.shape[0]) != int(data.x.shape[0]):
        raise ValueError(
            f"{data_name(data)}: y: {int(data.y.shape[0])} labels for "
            f"{int(data.x.shape[0])} samples"
        )


def _where(data: EvalData, a: int, b: int) -> str:
    return f"samples {a}-{b - 1} of {data_name(data)}"


def one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception from the user's model, on one line.

    TorchScript wraps the model's own exception in "The following operation failed in the
    TorchScript interpreter" and a trace of the scripted source; the last line is the
    exception itself (``builtins.ValueError: ...``), which is what the user needs.
    """
    text = str(exc)
    if isinstance(exc, OutputError):  # our own message about the model's output
        return _clip(" ".join(text.split()))
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


class OutputError(ValueError):
    """The model's output cannot be read as ``[batch, classes, ...]`` logits.

    ``batch`` is True when the problem is the batch dimension (a model that only handles
    one sample may return such outputs for a batch).
    """

    def __init__(self, message: str, *, batch: bool = False) -> None:
        super().__init__(message)
        self.batch = batch


def _output(out: Any) -> torch.Tensor:
    """The tensor output of a forward pass: a ``ModelOutput``'s (or dict's) ``logits``, else
    the first tensor of a tuple / dict."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        logits = out.get("logits")
        if isinstance(logits, torch.Tensor):
            return logits
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, torch.Tensor):
                return o
    raise OutputError(f"model output: expected a tensor, got {type(out).__name__}")


def _check_output(out: torch.Tensor, n: int) -> None:
    """:class:`OutputError` for an output the metrics cannot read (no samples or classes)."""
    shape = tuple(out.shape)
    if out.dim() == 0 or shape[0] != n:
        raise OutputError(
            f"model output: shape {list(shape)} for a batch of {n} samples (the first "
            "dimension must be the batch)",
            batch=True,
        )
    if out.dim() >= 2 and shape[1] == 0:
        raise OutputError(
            f"model output: shape {list(shape)} has zero classes (dimension 1 is empty)"
        )
    if out.numel() == 0:
        raise OutputError(f"model output: shape {list(shape)} is empty")
    if out.is_complex():
        raise OutputError("model output: complex values are not supported")


def model_output(handle: ModelHandle, raw: Any) -> torch.Tensor:
    """What the metrics read of ``handle``'s output ``raw``: its logits tensor with the class
    dimension on dim 1 when the handle says it is elsewhere (``meta["class_dim"]``: a masked
    LM's or token classifier's ``[batch, tokens, vocab]`` logits become ``[batch, vocab,
    tokens]``: one prediction per token). A causal LM's handle names no class dimension, so
    its logits stay ``[batch, tokens, vocab]``: perplexity, KL and agreement read the
    next-token distributions (:class:`quantviz.data.metrics.PerplexityAccumulator`)."""
    out = _output(raw)
    class_dim = handle.meta.get("class_dim")
    if isinstance(class_dim, int) and class_dim not in (1, -out.dim() + 1) and out.dim() > 2:
        out = out.movedim(class_dim, 1)
    return out


def _raw_forward(handle: ModelHandle, xb: torch.Tensor) -> torch.Tensor:
    dev = model_device(handle)
    out = model_output(handle, handle.module(xb.to(dev, non_blocking=True)))
    _check_output(out, int(xb.shape[0]))
    return out.detach().float().cpu()


def forward(
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
                handle.source, f"{stage} ({_where(data, a, b)})", one_line(exc)
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
    dev = model_device(handle)
    x = xb.to(dev)
    found: list[str] = []
    if handle.flavour == "torchscript":
        return None
    if handle.flavour == "onnx":  # every node output observed in onnxruntime
        return mod.locate_non_finite(x)  # type: ignore[operator]
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
        return f"{head}: the input already does ({data_name(data)}: sample {a + int(bad[0])})"
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


def first_batch(
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
    first: Exception
    try:
        return batch_size, {0: _raw_forward(handle, data.x[:n])}
    except OutputError as exc:
        if not exc.batch:  # no classes whatever the batch: say so for the batch
            raise EvalError(handle.source, f"{stage} ({_where(data, 0, n)})", str(exc)) from exc
        first = exc
    except Exception as exc:
        first = exc
    singles = {i: forward(handle, data, i, i + 1, stage, False) for i in range(n)}
    log.warning(
        "%s: the model refuses a batch of %d (%s) but runs on each sample alone; "
        "evaluating one sample at a time",
        handle.source,
        n,
        one_line(first),
    )
    return 1, singles


def update_metrics(
    acc: Any,
    out: torch.Tensor,
    data: EvalData,
    a: int,
    b: int,
    ref: torch.Tensor,
    handle: ModelHandle,
    stage: str,
) -> None:
    # a causal LM's labels are its input ids (the next token at every position)
    labels = data.x[a:b] if handle.is_causal_lm else (None if data.y is None else data.y[a:b])
    try:
        acc.update(out, labels, ref)
    except (ValueError, RuntimeError, IndexError) as exc:
        raise EvalError(handle.source, f"{stage} ({_where(data, a, b)})", one_line(exc)) from exc
