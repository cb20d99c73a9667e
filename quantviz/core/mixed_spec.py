"""The words of exact mixed precision: the menu of schemes (``--choices``) and the budget
(``--budget``). Parsing only; imports no torch.

Choices: a comma-separated list of schemes, each ``NAME[:GRANULARITY]``:

============================  ===============================================================
``intN`` (N = 2..8)           uniform symmetric N-bit integer (min/max)
``uintN``                     uniform asymmetric N-bit (a zero point)
``nf4``                       QLoRA's NormalFloat-4 levels
``fp8`` / ``fp8_e4m3``        OCP FP8 E4M3 (``fp8_e5m2``: E5M2); ``fp4``: FP4 E2M1
``mxfp8`` / ``mxfp8_e4m3``,   OCP MX block formats (blocks of 32; no granularity suffix)
``mxfp6_e3m2``, ``mxfp6_e2m3``,
``mxfp4``, ``mxint8``
``nvfp4``                     NVIDIA NVFP4 (blocks of 16; no granularity suffix)
``float``                     keep the weight float
============================  ===============================================================

GRANULARITY is ``pt`` (per tensor), ``pc`` (per output channel, the default) or ``gN`` (per
group of N along the last axis), e.g. ``int4:g128,int8:pc,nf4,mxfp4,nvfp4,float``.

Budget: ``0.25`` (a fraction of the float model's bytes, in (0, 1]), ``4.5bpw`` (average
storage bits per quantizable weight, scales included), a size ``30kB`` / ``3MB`` / ``1.5GB``
/ ``512KiB`` / ``1000B`` (the whole model; k, M, G are powers of 1000, Ki, Mi, Gi of 1024),
or bit operations per sample ``2.5GBOPs`` / ``1e9bops``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from quantviz.core.spec import BLOCK_FORMATS, QuantSpec

__all__ = ["Budget", "Scheme", "parse_budget", "parse_choices"]

DEFAULT_CHOICES = "int2:pc,int3:pc,int4:pc,int8:pc,nf4,fp8,mxfp4,nvfp4,float"

_ALIASES = {
    "fp8": "fp8_e4m3",
    "fp8_e4m3": "fp8_e4m3",
    "fp8_e5m2": "fp8_e5m2",
    "fp4": "fp4_e2m1",
    "fp4_e2m1": "fp4_e2m1",
    "nf4": "nf4",
    "mxfp8": "mxfp8_e4m3",
}


@dataclass(frozen=True)
class Scheme:
    """One entry of the menu: its label (as the user wrote it, normalised) and its weight
    spec (``None``: kept float)."""

    label: str
    spec: QuantSpec | None


def _granularity(gran: str, item: str, flag: str) -> dict[str, object]:
    if gran in ("", "pc"):
        return {"granularity": "per_channel", "axis": 0}
    if gran == "pt":
        return {"granularity": "per_tensor"}
    m = re.fullmatch(r"g([1-9][0-9]*)", gran)
    if m:
        return {"granularity": "per_group", "group_size": int(m.group(1))}
    raise ValueError(
        f"{flag}: {item!r}: granularity must be pt (per tensor), pc (per channel) or gN "
        f"(per group of N), got {gran!r}"
    )


def _scheme(item: str, flag: str) -> Scheme:
    name, _, gran = item.partition(":")
    name, gran = name.strip().lower(), gran.strip().lower()
    if name == "float":
        if gran:
            raise ValueError(f"{flag}: {item!r}: float takes no granularity")
        return Scheme("float", None)
    quantizer = _ALIASES.get(name, name)
    if quantizer in BLOCK_FORMATS:
        if gran:
            raise ValueError(
                f"{flag}: {item!r}: {quantizer} has its own blocks of "
                f"{BLOCK_FORMATS[quantizer]}; drop ':{gran}'"
            )
        return Scheme(name, QuantSpec(quantizer=quantizer))
    m = re.fullmatch(r"(u?)int([0-9]+)", name)
    if m:
        bits = int(m.group(2))
        if not 2 <= bits <= 8:
            raise ValueError(f"{flag}: {item!r}: integer widths are int2..int8, got {bits}")
        fields = {"bits": bits, "symmetric": not m.group(1), **_granularity(gran, item, flag)}
    elif quantizer in ("fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "nf4"):
        fields = {"quantizer": quantizer, **_granularity(gran, item, flag)}
    else:
        raise ValueError(
            f"{flag}: unknown scheme {name!r} in {item!r} (known: intN, uintN, nf4, fp8, "
            "fp8_e5m2, fp4, mxfp8, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8, nvfp4, float)"
        )
    spec = QuantSpec(**fields)  # type: ignore[arg-type]
    label = f"{name}:{gran or 'pc'}"
    return Scheme(label, spec)


def parse_choices(text: str, *, flag: str = "--choices") -> tuple[Scheme, ...]:
    """The schemes of a ``--choices`` list (see the module doc); ``ValueError`` naming
    ``flag`` and the item for anything wrong, duplicates included."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{flag}: give at least one scheme, e.g. int4:g128,int8:pc,float")
    out: list[Scheme] = []
    seen: dict[object, str] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise ValueError(f"{flag}: empty item in {text!r}")
        s = _scheme(item, flag)
        if s.spec in seen:
            raise ValueError(f"{flag}: {item!r} is the same scheme as {seen[s.spec]!r}")
        seen[s.spec] = item
        out.append(s)
    return tuple(out)


@dataclass(frozen=True)
class Budget:
    """A parsed ``--budget``: ``kind`` is ``fraction``, ``bpw``, ``bytes`` or ``bops``."""

    kind: str
    value: float
    text: str


_SIZE_UNITS = {
    "b": 1.0,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "kib": 1024.0,
    "mib": 1024.0**2,
    "gib": 1024.0**3,
}
_COUNT = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_NUMBER = r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)"


def parse_budget(text: str, *, flag: str = "--budget") -> Budget:
    """A budget (see the module doc); ``ValueError`` naming ``flag`` and the text otherwise."""
    raw = text.strip() if isinstance(text, str) else ""
    t = raw.lower().replace(" ", "")
    usage = (
        f"{flag}: expected a fraction of the float model (0.25), bits per weight (4.5bpw), a "
        f"size (30kB, 3MB) or bit operations (2.5GBOPs); got {text!r}"
    )
    m = re.fullmatch(_NUMBER + r"(bpw|bops|[kmgt]bops|[kmg]?i?b)?", t)
    if not m:
        raise ValueError(usage)
    value, unit = float(m.group(1)), m.group(2) or ""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{flag}: must be positive, got {text!r}")
    if unit == "":
        if value > 1:
            raise ValueError(
                f"{flag}: a plain number is a fraction of the float model in (0, 1], got "
                f"{text!r} (sizes need a unit: {raw}B, {raw}kB, {raw}MB)"
            )
        return Budget("fraction", value, raw)
    if unit == "bpw":
        if value > 64:
            raise ValueError(f"{flag}: bits per weight must be <= 64, got {text!r}")
        return Budget("bpw", value, raw)
    if unit.endswith("bops"):
        return Budget("bops", value * _COUNT[unit[: -len("bops")]], raw)
    if unit not in _SIZE_UNITS:
        raise ValueError(usage)
    return Budget("bytes", value * _SIZE_UNITS[unit], raw)
