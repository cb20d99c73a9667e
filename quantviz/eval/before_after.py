"""Before and after the remedies: the configuration without its transforms and rounding, and
the input activations of the transformed model.

- :func:`plain_config` is ``config`` with no model transforms and every weight rounded to
  nearest (the same grids): the "without" of every with/without comparison (error
  propagation, the trade-off plot's series, sweeps).
- :func:`transformed_activations` computes ``config``'s transformed state and captures every
  layer's input activations under it on the calibration data (into the state's ``stats``,
  the statistics an evaluation of the config calibrates its activation ranges on), so a view
  can put each layer's input before and after the transforms side by side.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from quantviz.core import ModelConfig
from quantviz.core.spec import LayerConfig, transform_label

if TYPE_CHECKING:
    from collections.abc import Generator

    from quantviz.data import EvalData
    from quantviz.eval.apply import WeightCache
    from quantviz.eval.transforms import Transformed
    from quantviz.model.handle import ModelHandle

__all__ = ["has_remedies", "plain_config", "remedy_label", "transformed_activations"]


def _nearest(lc: LayerConfig) -> LayerConfig:
    w = lc.weight
    if w is None or w.rounding == "nearest":
        return lc
    return replace(lc, weight=w.with_(rounding="nearest"))


def plain_config(config: ModelConfig) -> ModelConfig:
    """``config`` without transforms and with nearest rounding everywhere (else equal)."""
    return replace(
        config,
        transforms=(),
        default=_nearest(config.default),
        overrides=tuple((k, _nearest(v)) for k, v in config.overrides),
    )


def _roundings(config: ModelConfig) -> list[str]:
    out: list[str] = []
    for lc in (config.default, *(v for _, v in config.overrides)):
        r = lc.weight.rounding if lc.weight is not None else "nearest"
        if r != "nearest" and r not in out:
            out.append(r)
    return out


def has_remedies(config: ModelConfig) -> bool:
    """True when ``config`` has transforms or an AdaRound / GPTQ rounding."""
    return bool(config.transforms) or bool(_roundings(config))


def remedy_label(config: ModelConfig) -> str:
    """``cle+bias_correction``, ``smoothquant + gptq``, ``gptq``; ``""`` for none."""
    parts = [p for p in (transform_label(config.transforms), "+".join(_roundings(config))) if p]
    return " + ".join(parts)


def transformed_activations(
    handle: ModelHandle,
    data: EvalData,
    config: ModelConfig,
    *,
    cache: WeightCache | None = None,
    batch_size: int = 256,
) -> Generator[Any, None, Transformed | None]:
    """``config``'s transformed state (from ``cache.transforms`` when computed before) with
    every layer's input statistics captured under it on ``data.calib_x``, in its
    ``stats``; None when ``config`` has no transforms (nothing changes the activations).
    A generator of :class:`~quantviz.eval.results.Progress` (``transform`` steps, then
    ``calibrate`` per batch); stopping it leaves the model as it was and the state's
    statistics unchanged. ``ValueError`` naming the transform that cannot apply."""
    from quantviz.eval.apply import WeightCache
    from quantviz.eval.evaluate import calibrate
    from quantviz.eval.transforms import prepare_transforms, transformed

    if not config.transforms:
        return None
    cache = cache if cache is not None else WeightCache()
    state = yield from prepare_transforms(
        handle, config, data.calib_x, batch_size=batch_size, store=cache.transforms
    )
    if state is None:
        return None
    with transformed(handle, state):
        yield from calibrate(handle, data, list(handle.fqns), state.stats, batch_size=batch_size)
    return state
