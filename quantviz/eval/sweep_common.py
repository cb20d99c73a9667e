"""What the sweeps share: bit-width lists, the swept scheme, the float baseline they reuse."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, cast

from quantviz.core import FIXED_WIDTH, QuantSpec
from quantviz.core.defaults import DEFAULT_WEIGHT, FLOAT_CONFIG
from quantviz.eval.evaluate import (
    compute_baseline,
)
from quantviz.eval.results import Baseline, PointDone, Progress

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.handle import ModelHandle

__all__ = ["DEFAULT_SPEC", "FLOAT", "Event", "parse_bits"]

#: The weight scheme sweeps vary the bits of unless told otherwise (the one default).
DEFAULT_SPEC = DEFAULT_WEIGHT
#: every layer float (the LayerConfig of the layers a sensitivity run leaves alone)
FLOAT = FLOAT_CONFIG.default

Event = Progress | PointDone


def parse_bits(bits: int | str | Iterable[int], *, field_name: str = "bits") -> tuple[int, ...]:
    """Bit-widths from an int, ``"2,3,4"`` or a sequence; each 1..16, no duplicates."""
    if isinstance(bits, str):
        parts = [p.strip() for p in bits.split(",")]
        if not parts or any(not p for p in parts):
            raise ValueError(f"{field_name}: expected comma-separated integers, got {bits!r}")
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"{field_name}: expected comma-separated integers, got {bits!r}"
            ) from None
    elif isinstance(bits, int) and not isinstance(bits, bool):
        vals = [bits]
    else:
        vals = list(cast(Iterable[int], bits))
    if not vals:
        raise ValueError(f"{field_name}: give at least one bit-width")
    for b in vals:
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 16:
            raise ValueError(f"{field_name}: each bit-width must be an integer 1..16, got {b!r}")
    if len(set(vals)) != len(vals):
        raise ValueError(f"{field_name}: duplicate bit-widths in {vals}")
    return tuple(vals)


def _check_spec(spec: QuantSpec) -> QuantSpec:
    if not isinstance(spec, QuantSpec):
        raise ValueError(f"base_spec: must be a QuantSpec, got {type(spec).__name__}")
    if spec.quantizer in FIXED_WIDTH:
        raise ValueError(
            f"base_spec: {spec.quantizer} has a fixed width of {FIXED_WIDTH[spec.quantizer]} "
            "bits; a bit-width sweep needs uniform, log2 or kmeans"
        )
    return spec


def _ensure_baseline(
    handle: ModelHandle, data: EvalData, baseline: Baseline | None, batch_size: int
) -> Generator[Progress, None, Baseline]:
    if baseline is not None and baseline.matches(handle.module, data.x):
        return baseline
    return (yield from compute_baseline(handle, data, batch_size=batch_size))
