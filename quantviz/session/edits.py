"""Pure edits of a ``ModelConfig`` (used by the session, the controller and the GUI's undo
commands): each takes a configuration and returns a new one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec, check_pattern, is_pattern

__all__ = [
    "SIDES",
    "OverrideInfo",
    "Side",
    "apply_to_all",
    "copy_layer",
    "layers_matching",
    "move_override",
    "override_info",
    "remove_override",
    "reset_layers",
    "set_layer_spec",
    "set_pattern_spec",
]

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
        if v != config.default or is_pattern(k):
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


# -- pattern (glob / regex) overrides: grouped editing ----------------------------------------
def layers_matching(pattern: str, fqns: Iterable[str]) -> list[str]:
    """The layers of ``fqns`` (in their order) that override key ``pattern`` matches: an exact
    name, an ``fnmatch`` glob (``*.mlp.*``) or ``re:<regex>`` over the whole name, exactly as
    :meth:`ModelConfig.resolve` matches it. ``ValueError`` naming the problem for an empty
    pattern or a regex that does not compile."""
    check_pattern(pattern)
    return [f for f in fqns if ModelConfig._matches(pattern, f)]


def set_pattern_spec(
    config: ModelConfig, pattern: str, side: str, spec: QuantSpec | None
) -> ModelConfig:
    """``config`` with override ``pattern`` setting the ``side`` spec to ``spec`` (None =
    float) for every layer it matches, as the last override (so it wins).

    An existing override with that key keeps its other side and moves last; a new one starts
    from the default for the other side.
    """
    _check_side(side)
    check_pattern(pattern)
    if spec is not None and not isinstance(spec, QuantSpec):
        raise ValueError(f"spec: must be a QuantSpec or None, got {type(spec).__name__}")
    base = config.override_dict.get(pattern, config.default)
    return config.with_override(pattern, _with_side(base, side, spec))


def remove_override(config: ModelConfig, key: str) -> ModelConfig:
    """``config`` without override ``key``; ``ValueError`` if there is none."""
    if key not in config.override_dict:
        raise ValueError(f"override: no override {key!r} in this configuration")
    return replace(config, overrides=tuple((k, v) for k, v in config.overrides if k != key))


def move_override(config: ModelConfig, key: str, index: int) -> ModelConfig:
    """``config`` with override ``key`` moved to position ``index`` (0 = first, applied first;
    the last match wins). ``index`` is clamped to the list."""
    keys = [k for k, _ in config.overrides]
    if key not in keys:
        raise ValueError(f"override: no override {key!r} in this configuration")
    items = [p for p in config.overrides if p[0] != key]
    index = max(0, min(int(index), len(items)))
    items.insert(index, (key, config.override_dict[key]))
    return replace(config, overrides=tuple(items))


@dataclass(frozen=True)
class OverrideInfo:
    """What one override does in a configuration over a model's layers: ``matched`` layers
    match its key, ``decided`` of them resolve to it (no later override matches them too)."""

    key: str
    config: LayerConfig
    matched: int
    decided: int


def override_info(config: ModelConfig, fqns: Iterable[str]) -> list[OverrideInfo]:
    """One :class:`OverrideInfo` per override of ``config``, in order."""
    names = list(fqns)
    keys = [k for k, _ in config.overrides]
    matched = {k: 0 for k in keys}
    decided = {k: 0 for k in keys}
    for f in names:
        last = None
        for k in keys:
            if ModelConfig._matches(k, f):
                matched[k] += 1
                last = k
        if last is not None:
            decided[last] += 1
    return [OverrideInfo(k, v, matched[k], decided[k]) for k, v in config.overrides]
