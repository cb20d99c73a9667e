"""How much memory a file may make us allocate, checked before allocating.

Files declare their sizes (a zip member's uncompressed size, a ``.npy`` header's shape and
dtype, a sidecar's ``input_shape``); a hostile or broken file can claim terabytes. Readers
compare the claim with :func:`load_limit` first and refuse with a message that says how big
the file claimed to be.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

__all__ = [
    "HARD_LIMIT",
    "LIMIT_ENV",
    "available_memory",
    "claimed_bytes",
    "format_bytes",
    "load_limit",
    "too_big",
]

HARD_LIMIT = 4 * 1024**3
"""Never more than this, whatever the machine has (4 GiB)."""

LIMIT_ENV = "QUANTVIZ_MAX_LOAD_BYTES"
"""Environment variable that lowers (or raises, up to what is free) the limit, in bytes."""


def available_memory() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def load_limit() -> int:
    """Bytes one file may make us allocate: min(4 GiB, half the available memory).

    ``QUANTVIZ_MAX_LOAD_BYTES`` replaces the 4 GiB cap (still at most half the free memory).
    """
    cap = HARD_LIMIT
    env = os.environ.get(LIMIT_ENV, "").strip()
    if env:
        try:
            cap = max(0, int(env))
        except ValueError:
            raise ValueError(f"{LIMIT_ENV}: must be a number of bytes, got {env!r}") from None
    avail = available_memory()
    if avail is not None:
        cap = min(cap, avail // 2)
    return cap


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``; exact bytes under 1 KiB."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def claimed_bytes(shape: Iterable[int], itemsize: int) -> int:
    """Bytes an array of ``shape`` and ``itemsize`` needs (Python ints: no overflow)."""
    return math.prod(int(s) for s in shape) * int(itemsize)


def too_big(what: str, claimed: int, limit: int | None = None, *, factor: int = 1) -> str | None:
    """The refusal message if ``claimed`` bytes (times ``factor``) exceed the limit, else None.

    ``factor`` is the peak memory of loading relative to the data's size (e.g. reading an
    ``.npz`` member and converting it takes about three times the array).
    """
    limit = load_limit() if limit is None else limit
    if claimed * factor <= limit:
        return None
    need = "" if factor == 1 else f"; loading needs about {factor}x that"
    return (
        f"{what} claims {format_bytes(claimed)} ({claimed:,} bytes){need}, over the load limit "
        f"of {format_bytes(limit)} (min(4 GiB, half the available memory); {LIMIT_ENV} sets it)"
    )
