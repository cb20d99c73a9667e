"""Granularity as small frozen types (after torchao's ``quantization/granularity.py``).

Each type says how many scales (rows) a tensor of a given shape gets and what shape the
scale has. :class:`~quantviz.core.spec.QuantSpec` accepts them (``granularity=PerAxis(1)``)
and gives one back (:attr:`QuantSpec.granularity_type`); the config file keeps its flat form
(``"granularity": "per_channel", "axis": 1``), which the spec maps to and from these types.
Invalid values raise ``ValueError`` naming the field, never ``assert``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "Granularity",
    "PerAxis",
    "PerGroup",
    "PerTensor",
    "fitting_group_size",
    "granularity_of",
    "group_sizes",
]


def _shape(shape: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    out = tuple(int(s) for s in shape)
    if not out or any(s < 1 for s in out):
        raise ValueError(f"shape: must be a non-empty list of positive sizes, got {list(shape)}")
    return out


@dataclass(frozen=True)
class PerTensor:
    """One scale for the whole tensor: the scale has shape ``[]``."""

    name = "per_tensor"

    def groups(self, shape: tuple[int, ...]) -> int:
        _shape(shape)
        return 1

    def scale_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        _shape(shape)
        return ()


@dataclass(frozen=True)
class PerAxis:
    """One scale per index along ``axis`` (negative counts from the end): the scale has
    shape ``[shape[axis]]``. ``PerAxis(0)`` is per output channel of a conv / linear weight."""

    axis: int = 0
    name = "per_channel"

    def __post_init__(self) -> None:
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise ValueError(f"axis: must be an integer, got {self.axis!r}")

    def _axis(self, shape: tuple[int, ...]) -> int:
        nd = len(_shape(shape))
        if not -nd <= self.axis < nd:
            raise ValueError(f"axis: {self.axis} is out of range for a {nd}-D tensor {list(shape)}")
        return self.axis % nd

    def groups(self, shape: tuple[int, ...]) -> int:
        return int(shape[self._axis(shape)])

    def scale_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.groups(shape),)


@dataclass(frozen=True)
class PerGroup:
    """Contiguous groups of ``group_size`` values along the last axis of the tensor's
    ``[shape[0], numel / shape[0]]`` view (a conv kernel's GEMM view): the scale has shape
    ``[shape[0] * numel / shape[0] / group_size]``."""

    group_size: int = 128
    name = "per_group"

    def __post_init__(self) -> None:
        g = self.group_size
        if isinstance(g, bool) or not isinstance(g, int) or g < 1:
            raise ValueError(f"group_size: must be a positive integer, got {g!r}")

    def groups(self, shape: tuple[int, ...]) -> int:
        shape = _shape(shape)
        row = math.prod(shape) // shape[0]
        if row % self.group_size:
            raise ValueError(
                f"group_size: {self.group_size} does not divide the row length {row} "
                f"(per_group views shape {list(shape)} as [{shape[0]}, {row}])"
            )
        return shape[0] * row // self.group_size

    def scale_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.groups(shape),)


Granularity = PerTensor | PerAxis | PerGroup


def granularity_of(name: str, axis: int = 0, group_size: int = 128) -> Granularity:
    """The type for a config file's flat form (``"per_channel"`` + ``axis`` ...)."""
    if name == "per_tensor":
        return PerTensor()
    if name == "per_channel":
        return PerAxis(axis)
    if name == "per_group":
        return PerGroup(group_size)
    raise ValueError(
        f"granularity: must be one of per_tensor, per_channel, per_group; got {name!r}"
    )


def group_sizes(row_lens: list[int], at_most: int = 1 << 16) -> list[int]:
    """The group sizes (ascending, up to ``at_most``) that divide every row length."""
    g = 0
    for n in row_lens:
        g = math.gcd(g, int(n))
    return [d for d in range(1, min(g, at_most) + 1) if g % d == 0]


def fitting_group_size(row_lens: list[int], wanted: int = 128) -> int:
    """The largest group size <= ``wanted`` that divides every row length (``wanted`` when
    there are no rows)."""
    sizes = group_sizes(row_lens, wanted)
    return sizes[-1] if sizes else wanted
