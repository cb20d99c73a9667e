"""Model-level transforms and better rounding, applied before quantization (no Qt).

A :class:`~quantviz.core.ModelConfig` lists ``transforms`` (applied in its order) and each
weight spec a ``rounding``; :func:`prepare_transforms` computes what they do to the model —
new weight / bias / norm tensors (copy-on-write, never written into the loaded model),
inserted operations, per-layer notes, rounded weights — as a :class:`Transformed`, and
:func:`transformed` puts it into the model for a ``with`` block and restores the float
model bit for bit afterwards. :func:`quantviz.eval.apply.apply_config` and
:func:`quantviz.eval.evaluate` do both for a configuration that has transforms or rounding.

============== =====================================================================
fold_bn        BatchNorm folded into the conv / linear before it (:mod:`.dfq`)
cle            cross-layer equalization, DFQ's ``s = sqrt(r1 / r2)`` iterated (:mod:`.dfq`)
bias_correction empirical: the mean output shift of quantized weights removed (:mod:`.bias`)
smoothquant    activation outliers migrated into the weights (``alpha``) (:mod:`.rotate`)
hadamard       Hadamard rotations fused into the weights (:mod:`.rotate`)
adaround, gptq per-spec rounding from calibration inputs (:mod:`.rounding`)
============== =====================================================================

Every step is a generator yielding :class:`~quantviz.eval.results.Progress`; stopping it at
any yield leaves the model as it was (nothing is cached until a transform list completes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import torch

from quantviz.core import ModelConfig, QuantSpec
from quantviz.eval.results import Progress
from quantviz.eval.transforms.bias import bias_correction
from quantviz.eval.transforms.context import MAX_CALIB_SAMPLES, TransformContext
from quantviz.eval.transforms.dfq import cle, fold_bn
from quantviz.eval.transforms.graph import model_graph
from quantviz.eval.transforms.rotate import hadamard, hadamard_matrix, smoothquant
from quantviz.eval.transforms.rounding import round_layers
from quantviz.eval.transforms.state import Transformed, transformed

if TYPE_CHECKING:
    from quantviz.model.handle import ModelHandle

__all__ = [
    "MAX_CALIB_SAMPLES",
    "TRANSFORM_FUNCTIONS",
    "TransformStore",
    "Transformed",
    "hadamard_matrix",
    "learns_rounding",
    "model_graph",
    "needs_transforms",
    "prepare_transforms",
    "rounding_layers",
    "state_key",
    "transformed",
]

TransformFn = Callable[
    [TransformContext, Transformed, dict[str, Any]], Generator[Progress, None, None]
]

TRANSFORM_FUNCTIONS: dict[str, TransformFn] = {
    "fold_bn": fold_bn,
    "cle": cle,
    "bias_correction": bias_correction,
    "smoothquant": smoothquant,
    "hadamard": hadamard,
}


def rounding_layers(handle: ModelHandle, config: ModelConfig) -> list[tuple[str, QuantSpec]]:
    """``(fqn, weight spec)`` of the layers whose spec asks for AdaRound or GPTQ and that can
    learn it (``nn.Linear``, ``nn.Conv2d``). Other layers a default spec reaches (an
    embedding, GPT-2's ``Conv1D``) keep nearest rounding (:func:`learns_rounding`)."""
    out = []
    for fqn in handle.fqns:
        spec = config.resolve(fqn).weight
        if spec is not None and spec.rounding != "nearest" and learns_rounding(handle, fqn):
            out.append((fqn, spec))
    return out


def learns_rounding(handle: ModelHandle, fqn: str) -> bool:
    """True when layer ``fqn`` is a ``nn.Linear`` or ``nn.Conv2d`` (AdaRound / GPTQ apply)."""
    try:
        mod = handle.module.get_submodule(handle.layer(fqn).module_fqn)
    except (AttributeError, KeyError):
        return False
    return isinstance(mod, torch.nn.Linear | torch.nn.Conv2d)


def needs_transforms(handle: ModelHandle, config: ModelConfig) -> bool:
    return bool(config.transforms) or bool(rounding_layers(handle, config))


class TransformStore:
    """The last few :class:`Transformed` states, keyed by model, transforms (and the
    config's weight specs where ``bias_correction`` depends on them) and calibration data."""

    def __init__(self, size: int = 3) -> None:
        self.size = size
        self._states: OrderedDict[tuple[Any, ...], Transformed] = OrderedDict()
        #: the key :meth:`pin` keeps (the state the views show): never evicted by ``put``
        self.pinned: tuple[Any, ...] | None = None

    def get(self, key: tuple[Any, ...]) -> Transformed | None:
        st = self._states.get(key)
        if st is not None:
            self._states.move_to_end(key)
        return st

    def pin(self, key: tuple[Any, ...] | None) -> None:
        """Keep the state of ``key`` (when stored) through later ``put`` calls (a sweep's
        states would evict the one the views show); ``None`` unpins."""
        self.pinned = key

    def put(self, state: Transformed) -> None:
        self._states[state.key] = state
        self._states.move_to_end(state.key)
        while len(self._states) > self.size:
            old = next((k for k in self._states if k != self.pinned), None)
            if old is None:
                break
            del self._states[old]

    def clear(self) -> None:
        self._states.clear()
        self.pinned = None

    def __len__(self) -> int:
        return len(self._states)


def _calib_key(x: torch.Tensor | None) -> tuple[Any, ...]:
    if x is None:
        return (None,)
    head = x[:4].detach().to(torch.float64)
    return (id(x), tuple(x.shape), float(head.sum()), float(head.abs().sum()))


def state_key(
    handle: ModelHandle, config: ModelConfig, calib_x: torch.Tensor | None
) -> tuple[Any, ...]:
    specs: tuple[Any, ...] = ()
    if "bias_correction" in config.transform_names:
        specs = tuple(
            (f, config.resolve(f).weight) for f in handle.fqns
        )  # the correction depends on the quantized weights
    return (id(handle.module), config.transforms, specs, _calib_key(calib_x))


def prepare_transforms(
    handle: ModelHandle,
    config: ModelConfig,
    calib_x: torch.Tensor | None = None,
    *,
    batch_size: int = 256,
    store: TransformStore | None = None,
) -> Generator[Progress, None, Transformed | None]:
    """Apply ``config``'s transforms (in order) and roundings; return the state (``None``
    when the config has neither). ``calib_x``: calibration inputs (needed by
    bias_correction, smoothquant, adaround and gptq; the first
    :data:`~quantviz.eval.transforms.context.MAX_CALIB_SAMPLES` are used). ``store`` keeps
    states across calls (the GUI, sweeps). Raises ``ValueError`` naming the transform /
    layer that cannot apply."""
    if not needs_transforms(handle, config):
        return None
    if config.transforms and handle.flavour != "nn":
        raise ValueError(
            f"transforms: {handle.name} is a {handle.flavour} model; transforms need an "
            "nn.Module (a state_dict + architecture or a sample)"
        )
    key = state_key(handle, config, calib_x)
    state = store.get(key) if store is not None else None
    ctx = TransformContext(handle, config, calib_x, batch_size)
    if state is None:
        new = Transformed(key=key)
        for name, params in config.transforms:
            yield from TRANSFORM_FUNCTIONS[name](ctx, new, dict(params))
        state = new
        if store is not None:
            store.put(state)
    todo = [(f, s) for f, s in rounding_layers(handle, config) if (f, s) not in state.rounded]
    if todo:
        yield from round_layers(ctx, state, todo)
    return state
