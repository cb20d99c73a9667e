"""Methods to compare in a sweep over bit-widths (issue 13: one curve per method).

A method is a rounding (``nearest``, ``adaround``, ``gptq``), a chain of transforms
(``cle+bias_correction``, ``smoothquant``, ``hadamard``), or both joined by ``+``
(``smoothquant+gptq``); ``none`` is nearest rounding without transforms. The transforms keep
their default parameters and run in the order written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from quantviz.core.spec import ROUNDINGS, TRANSFORMS, TransformEntry, check_transforms

__all__ = ["DEFAULT_METHODS", "METHOD_CHOICES", "Method", "parse_method", "parse_methods"]

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


@dataclass(frozen=True)
class Method:
    """``transforms`` (applied in order) and the weights' ``rounding``; ``label`` names the
    method's curve (``nearest``, ``gptq``, ``cle+bias_correction``, ``smoothquant+gptq``)."""

    transforms: tuple[TransformEntry, ...] = ()
    rounding: str = "nearest"

    @property
    def label(self) -> str:
        parts = [name for name, _ in self.transforms]
        if self.rounding != "nearest" or not parts:
            parts.append(self.rounding)
        return "+".join(parts)


def parse_method(text: str, where: str = "method") -> Method:
    """``"cle+bias_correction"`` -> :class:`Method`; ``ValueError`` naming ``where`` and the
    part that is not a transform or a rounding."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: must be a method name such as nearest or cle+bias_correction")
    names: list[str] = []
    rounding = None
    for part in text.strip().split("+"):
        p = part.strip()
        if p == "none":
            continue
        if p in ROUNDINGS:
            if rounding is not None:
                raise ValueError(f"{where}: {text!r} names two roundings ({rounding}, {p})")
            rounding = p
        elif p in TRANSFORMS:
            names.append(p)
        else:
            raise ValueError(
                f"{where}: {p!r} in {text!r} is neither a rounding ({', '.join(ROUNDINGS)}) "
                f"nor a transform ({', '.join(TRANSFORMS)}), nor none"
            )
    try:
        transforms = check_transforms(names)
    except ValueError as exc:
        raise ValueError(f"{where}: {text!r}: {exc}") from None
    return Method(transforms, rounding or "nearest")


def parse_methods(items: str | Iterable[str], where: str = "methods") -> tuple[Method, ...]:
    """Comma-separated text or a list of method names -> distinct methods in order
    (``none`` and ``nearest`` are one); ``ValueError`` naming ``where`` otherwise."""
    parts = items.split(",") if isinstance(items, str) else list(items)
    out: list[Method] = []
    for i, p in enumerate(parts):
        if isinstance(p, str) and not p.strip() and isinstance(items, str):
            continue
        m = parse_method(p, f"{where}[{i}]")
        if m not in out:
            out.append(m)
    if not out:
        raise ValueError(f"{where}: no method given (e.g. {','.join(DEFAULT_METHODS)})")
    if len(out) > MAX_METHODS:
        raise ValueError(f"{where}: at most {MAX_METHODS} methods, got {len(out)}")
    return tuple(out)
