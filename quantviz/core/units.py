"""Human-readable numbers (one formatter for the GUI, the CLI and the reports)."""

from __future__ import annotations

__all__ = ["human_bytes", "human_count"]


def human_bytes(n: float) -> str:
    """``1.50 kB``, ``3.20 MB`` ... (decimal units)."""
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= f:
            return f"{n / f:.2f} {unit}"
    return f"{n:.0f} B"


def human_count(n: float) -> str:
    """``1.2k``, ``3.4M`` ... for parameter counts."""
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= f:
            return f"{n / f:.1f}{unit}"
    return str(int(n))
