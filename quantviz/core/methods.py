"""Methods to compare in a sweep over bit-widths (issue 13: one curve per method).

A method is a rounding (``nearest``, ``adaround``, ``gptq``), a chain of transforms
(``cle+bias_correction``, ``smoothquant``, ``hadamard``), or both joined by ``+``
(``smoothquant+gptq``); ``none`` is nearest rounding without transforms. The transforms run
in the order written. A transform may carry parameters in brackets, those its configuration
entry takes (:data:`~quantviz.core.spec.TRANSFORM_PARAMS`): ``smoothquant(alpha=0.8)``,
``cle(iterations=5, tolerance=0.001)+bias_correction``. A parameter not written is the
``configured`` one (the current configuration's transform entry, when it has that transform),
else the default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from quantviz.core.spec import (
    ROUNDINGS,
    TRANSFORMS,
    TransformEntry,
    check_transforms,
    transform_label,
)

__all__ = [
    "DEFAULT_METHODS",
    "METHOD_CHOICES",
    "Method",
    "configured_choice",
    "parse_method",
    "parse_methods",
    "split_top",
]

#: what a user picks from (the GUI's checkboxes): roundings, then transform chains
METHOD_CHOICES: tuple[str, ...] = (
    "nearest",
    "adaround",
    "gptq",
    "cle+bias_correction",
    "smoothquant",
    "hadamard",
)
DEFAULT_METHODS: tuple[str, ...] = ("nearest", "gptq", "cle+bias_correction")
MAX_METHODS = 12

_PART = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*", re.DOTALL)


@dataclass(frozen=True)
class Method:
    """``transforms`` (applied in order, every parameter filled in) and the weights'
    ``rounding``; ``label`` names the method's curve (``nearest``, ``gptq``,
    ``cle+bias_correction``, ``smoothquant(alpha=0.8)+gptq``: non-default parameters in
    brackets) and parses back to the same method."""

    transforms: tuple[TransformEntry, ...] = ()
    rounding: str = "nearest"

    @property
    def label(self) -> str:
        parts = [transform_label(self.transforms)] if self.transforms else []
        if self.rounding != "nearest" or not parts:
            parts.append(self.rounding)
        return "+".join(parts)

    def params_dict(self) -> list[dict[str, dict[str, Any]]]:
        """The transforms with every parameter, as a configuration file writes them:
        ``[{"smoothquant": {"alpha": 0.8}}]``."""
        return [{name: dict(params)} for name, params in self.transforms]


def split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets: ``"a(x=1,y=2),b"`` -> ``["a(x=1,y=2)",
    "b"]``. ``ValueError`` for unbalanced brackets."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"{text!r}: a ')' without its '('")
        elif ch == sep and depth == 0:
            out.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"{text!r}: a '(' without its ')'")
    out.append(text[start:])
    return out


def _number(text: str) -> int | float:
    t = text.strip()
    if re.fullmatch(r"[+-]?\d+", t):
        return int(t)
    return float(t)  # ValueError for text that is not a number


def _params(name: str, body: str, where: str) -> dict[str, int | float]:
    """``"alpha=0.8"`` -> ``{"alpha": 0.8}`` (the values checked later by check_transforms)."""
    out: dict[str, int | float] = {}
    for item in split_top(body, ","):
        if not item.strip():
            if body.strip():
                raise ValueError(f"{where}: {name}({body}): an empty parameter")
            continue
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"{where}: {name}.{item.strip()}: must be NAME=NUMBER")
        if key in out:
            raise ValueError(f"{where}: {name}.{key}: given twice")
        try:
            out[key] = _number(value)
        except ValueError:
            raise ValueError(
                f"{where}: {name}.{key}: must be a number, got {value.strip()!r}"
            ) from None
    return out


def parse_method(
    text: str, where: str = "method", configured: Iterable[TransformEntry] = ()
) -> Method:
    """``"cle(iterations=5)+bias_correction"`` -> :class:`Method`; a parameter not written
    is ``configured``'s (transform entries, e.g. a ``ModelConfig.transforms``), else the
    default. ``ValueError`` naming ``where``, the method and the part or parameter."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: must be a method name such as nearest or cle+bias_correction")
    base = {name: dict(params) for name, params in check_transforms(configured)}
    entries: list[dict[str, dict[str, Any]]] = []
    rounding = None
    try:
        parts = split_top(text.strip(), "+")
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    for part in parts:
        m = _PART.fullmatch(part)
        if m is None:
            raise ValueError(
                f"{where}: {part.strip()!r} in {text!r} is not NAME or NAME(PARAMETER=NUMBER, ...)"
            )
        p, body = m.group(1), m.group(2)
        if body is not None and (p in ROUNDINGS or p == "none"):
            raise ValueError(f"{where}: {p!r} in {text!r} takes no parameters")
        if p == "none":
            continue
        if p in ROUNDINGS:
            if rounding is not None:
                raise ValueError(f"{where}: {text!r} names two roundings ({rounding}, {p})")
            rounding = p
        elif p in TRANSFORMS:
            params = dict(base.get(p, {}))
            params.update(_params(p, body or "", f"{where}: {text!r}"))
            entries.append({p: params})
        else:
            raise ValueError(
                f"{where}: {p!r} in {text!r} is neither a rounding ({', '.join(ROUNDINGS)}) "
                f"nor a transform ({', '.join(TRANSFORMS)}), nor none"
            )
    try:
        transforms = check_transforms(entries)
    except ValueError as exc:
        msg = str(exc).removeprefix("transforms.")
        raise ValueError(f"{where}: {text!r}: {msg}") from None
    return Method(transforms, rounding or "nearest")


def parse_methods(
    items: str | Iterable[str],
    where: str = "methods",
    configured: Iterable[TransformEntry] = (),
) -> tuple[Method, ...]:
    """Comma-separated text (commas inside brackets do not split) or a list of method names
    -> distinct methods in order (``none`` and ``nearest`` are one, so are ``smoothquant`` and
    ``smoothquant(alpha=0.5)``); ``configured`` as in :func:`parse_method`; ``ValueError``
    naming ``where`` otherwise."""
    if isinstance(items, str):
        try:
            parts: list[Any] = split_top(items, ",")
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    else:
        parts = list(items)
    configured = tuple(configured)
    out: list[Method] = []
    for i, p in enumerate(parts):
        if isinstance(p, str) and not p.strip() and isinstance(items, str):
            continue
        m = parse_method(p, f"{where}[{i}]", configured)
        if m not in out:
            out.append(m)
    if not out:
        raise ValueError(f"{where}: no method given (e.g. {','.join(DEFAULT_METHODS)})")
    if len(out) > MAX_METHODS:
        raise ValueError(f"{where}: at most {MAX_METHODS} methods, got {len(out)}")
    return tuple(out)


def configured_choice(choice: str, configured: Iterable[TransformEntry]) -> str:
    """The label of method ``choice`` (a name such as ``cle+bias_correction``) with the
    ``configured`` transforms' parameters: ``smoothquant(alpha=0.8)``."""
    return parse_method(choice, choice, configured).label
