"""Human-readable sizes (one formatter for the CLI, the app and the reports)."""

from __future__ import annotations

import math

__all__ = ["human_bytes", "human_count"]

_UNITS = (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3))


def human_bytes(n: float) -> str:
    """``n`` bytes in decimal units: ``"812 B"``, ``"1.50 kB"``, ``"3.20 MB"``, ``"1.10 GB"``.

    Two decimals above 1 kB, whole bytes below; negative sizes keep their sign; a
    non-finite size prints as ``"n/a"``.
    """
    n = float(n)
    if not math.isfinite(n):
        return "n/a"
    sign, a = ("-", -n) if n < 0 else ("", n)
    if a < 999.5:
        return f"{sign}{a:.0f} B"
    for i, (unit, div) in enumerate(_UNITS):
        if a >= div or i == len(_UNITS) - 1:
            # 999.996 kB rounds to 1000.00: print it as 1.00 MB
            if i > 0 and round(a / div, 2) >= 1000:
                unit, div = _UNITS[i - 1]
            return f"{sign}{a / div:.2f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def human_count(n: float) -> str:
    """``1.2k``, ``3.4M`` ... for parameter counts."""
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= f:
            return f"{n / f:.1f}{unit}"
    return str(int(n))
