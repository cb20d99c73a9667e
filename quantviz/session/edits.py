"""Pure edits of a ``ModelConfig`` (used by the session, the controller and the GUI's undo
commands): each takes a configuration and returns a new one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Literal

from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec

__all__ = ["SIDES", "Side", "apply_to_all", "copy_layer", "reset_layers", "set_layer_spec"]

Side = Literal["weight", "activation"]
SIDES: tuple[str, ...] = ("weight", "activation")


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"side: must be 'weight' or 'activation', got {side!r}")


def _with_side(cfg: LayerConfig, side: str, spec: QuantSpec | None) -> LayerConfig:
    return replace(cfg, **{side: spec})


def _normalise(config: ModelConfig) -> ModelConfig:
    """Drop exact-name overrides equal to the default (they change nothing)."""

    def redundant(k: str, v: LayerConfig) -> bool:
        if v != config.default or any(c in k for c in "*?["):
            return False
        return config.matching(k) == [k]  # no glob override it would be shadowing

    keep = tuple((k, v) for k, v in config.overrides if not redundant(k, v))
    return replace(config, overrides=keep)


# -- pure config edits (used by the session and by the GUI's undo commands) ------------------
def set_layer_spec(
    config: ModelConfig, fqns: Iterable[str], side: str, spec: QuantSpec | None
) -> ModelConfig:
    """``config`` with the ``side`` spec of layers ``fqns`` set to ``spec`` (None = float)."""
    _check_side(side)
    if spec is not None and not isinstance(spec, QuantSpec):
        raise ValueError(f"spec: must be a QuantSpec or None, got {type(spec).__name__}")
    out = config
    for fqn in fqns:
        cur = out.resolve(fqn)
        new = _with_side(cur, side, spec)
        if new == out.default and not [k for k in out.matching(fqn) if k != fqn]:
            out = out.with_override(fqn, None)
        else:
            out = out.with_override(fqn, new)
    return _normalise(out)


def apply_to_all(config: ModelConfig, side: str, spec: QuantSpec | None) -> ModelConfig:
    """``config`` with ``side`` set to ``spec`` in the default and in every override."""
    _check_side(side)
    default = _with_side(config.default, side, spec)
    overrides = tuple((k, _with_side(v, side, spec)) for k, v in config.overrides)
    return _normalise(replace(config, default=default, overrides=overrides))


def reset_layers(config: ModelConfig, fqns: Iterable[str]) -> ModelConfig:
    """``config`` without the exact-name overrides of ``fqns`` (they follow the default)."""
    out = config
    for fqn in fqns:
        out = out.with_override(fqn, None)
    return out


def copy_layer(source: ModelConfig, target: ModelConfig, fqns: Iterable[str]) -> ModelConfig:
    """``target`` with layers ``fqns`` set to what they resolve to in ``source``
    (weight and activation spec alike)."""
    out = target
    for fqn in [fqns] if isinstance(fqns, str) else fqns:
        want = source.resolve(fqn)
        for side in SIDES:
            out = set_layer_spec(out, [fqn], side, getattr(want, side))
    return out
