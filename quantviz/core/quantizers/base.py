"""Shared machinery: the row view of a tensor per granularity, chunked in-place kernels.

Every quantizer works on a 2-D float32 *row view* ``[R, K]`` of the tensor: one row per
scale (R = 1 per tensor, the channels per channel, the groups per group). Fitted
parameters are per row. Kernels run over cache-sized chunks of that view into a reused
output buffer, so a chain of in-place ops costs about one trip through memory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from quantviz.core.spec import QuantSpec

__all__ = ["CHUNK", "Fitted", "RowView", "chunk_target", "chunks", "kernel_threads", "row_view"]

#: elements per chunk with one thread: 1 MiB of float32, well inside the 2 MiB L2 of the
#: target machines
CHUNK = 1 << 18

#: tensors below this many values are quantized with one thread (a thread hand-off costs
#: more than it saves)
PARALLEL_MIN = 1 << 22


def chunk_target() -> int:
    """Elements per chunk for the calling thread's torch thread count.

    One thread: :data:`CHUNK` (cache-sized, the chain of in-place ops stays in L2). Several
    threads: 16x larger, so that each op is worth splitting (measured on a loaded 2-core
    machine, 1 MiB chunks with 2 threads were 2-10x slower than with one: every small op
    waits for the other core).
    """
    return CHUNK if torch.get_num_threads() <= 1 else CHUNK * 16


def _free_cores() -> int:
    """Cores not busy with other work: ``cpu_count - 1-minute load + 1`` (this thread counts)."""
    n = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # pragma: no cover - not on Linux/macOS
        return n
    return max(1, min(n, int(n - load + 1.0)))


def _threads_for(numel: int) -> int:
    env = os.environ.get("QUANTVIZ_KERNEL_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    if numel < PARALLEL_MIN:
        return 1
    return max(1, min(torch.get_num_threads(), _free_cores()))


@contextlib.contextmanager
def kernel_threads(numel: int) -> Iterator[int]:
    """Run the block with the torch thread count that suits quantizing ``numel`` values.

    One thread below :data:`PARALLEL_MIN` values or when the machine has no idle core (the
    1-minute load average), else the caller's count capped by the idle cores;
    ``QUANTVIZ_KERNEL_THREADS=n`` forces ``n``. The count is per calling thread (torch's
    OpenMP setting), so a worker thread changing it leaves the GUI thread's alone; it is
    restored on exit.
    """
    before = torch.get_num_threads()
    n = _threads_for(numel)
    if n == before:
        yield n
        return
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@dataclass(frozen=True)
class RowView:
    """How a tensor of ``shape`` maps onto rows ``[rows, row_len]`` and back."""

    shape: tuple[int, ...]
    granularity: str
    axis: int  # normalised, >= 0 (0 when not per_channel)
    rows: int
    row_len: int

    def to_rows(self, x: torch.Tensor) -> torch.Tensor:
        """A 2-D float32 view (a copy only where the layout or dtype demands it)."""
        if x.dtype != torch.float32:
            x = x.to(torch.float32)
        if self.granularity == "per_channel" and self.axis != 0:
            x = x.movedim(self.axis, 0)
        return x.reshape(self.rows, self.row_len)

    def row(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Row ``i`` of :meth:`to_rows` in ``x``'s own dtype (no copy of the other rows)."""
        if self.granularity == "per_channel" and self.axis != 0:
            return x.select(self.axis, i).reshape(-1)
        return x.reshape(self.rows, self.row_len)[i]

    def from_rows(self, r: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_rows` (a contiguous tensor of ``shape``)."""
        if self.granularity == "per_channel" and self.axis != 0:
            moved = (self.shape[self.axis], *self.shape[: self.axis], *self.shape[self.axis + 1 :])
            return r.reshape(moved).movedim(0, self.axis).contiguous()
        return r.reshape(self.shape)

    def param_shape(self) -> tuple[int, ...]:
        """Shape of per-row parameters as users see them (``[]``, ``[C]`` or ``[G]``)."""
        return () if self.granularity == "per_tensor" else (self.rows,)


def row_view(shape: tuple[int, ...] | torch.Size, spec: QuantSpec) -> RowView:
    """The row view of ``shape`` under ``spec``'s granularity; ValueError if impossible."""
    shape = tuple(int(s) for s in shape)
    numel = 1
    for s in shape:
        numel *= s
    if numel == 0:
        raise ValueError(f"tensor is empty (shape {list(shape)}); nothing to quantize")
    g = spec.granularity
    if g == "per_tensor":
        return RowView(shape, g, 0, 1, numel)
    if not shape:
        raise ValueError(f"granularity: {g} needs a tensor with at least one dimension")
    if g == "per_channel":
        nd = len(shape)
        if not -nd <= spec.axis < nd:
            raise ValueError(f"axis: {spec.axis} is out of range for a {nd}-D tensor {list(shape)}")
        ax = spec.axis % nd
        c = shape[ax]
        return RowView(shape, g, ax, c, numel // c)
    rows = spec.granularity_type.groups(shape)  # ValueError when the group does not divide
    return RowView(shape, g, 0, rows, spec.group_size)


def chunks(
    rows: int, row_len: int, target: int | None = None
) -> Iterator[tuple[int, int, int, int]]:
    """Blocks ``(r0, r1, c0, c1)`` of about ``target`` elements covering ``[rows, row_len]``
    (default :func:`chunk_target`)."""
    if target is None:
        target = chunk_target()
    if row_len >= target:
        for r in range(rows):
            for c0 in range(0, row_len, target):
                yield r, r + 1, c0, min(row_len, c0 + target)
    else:
        rb = max(1, target // row_len)
        for r0 in range(0, rows, rb):
            yield r0, min(rows, r0 + rb), 0, row_len


class Fitted:
    """A quantizer with its parameters fitted for R rows (abstract)."""

    #: per-row scale [R] (None where it does not apply)
    scale: torch.Tensor | None = None
    #: per-row integer zero point [R] (None where it does not apply)
    zero_point: torch.Tensor | None = None

    def apply_(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """Write the fake-quantized rows of ``x`` [R, K] (float32) into ``out``."""
        rows, k = x.shape
        target = chunk_target()
        scratch = self.scratch(min(x.numel(), target))
        for r0, r1, c0, c1 in chunks(rows, k, target):
            self.apply_block_(x[r0:r1, c0:c1], out[r0:r1, c0:c1], r0, r1, scratch)

    def scratch(self, n: int) -> Any:
        """Reused buffers for :meth:`apply_block_` on blocks of up to ``n`` values."""
        return None

    def apply_block_(
        self, x: torch.Tensor, out: torch.Tensor, r0: int, r1: int, scratch: Any
    ) -> None:
        """Fake-quantize the block ``x`` of rows ``r0:r1`` into ``out`` (same shape; ``out``
        may be a view of the caller's output; ``scratch`` from :meth:`scratch`)."""
        raise NotImplementedError

    def levels(self) -> torch.Tensor:
        """The representable values, float32 [R, L], sorted ascending per row."""
        raise NotImplementedError

    def row_levels(self, row: int) -> torch.Tensor:
        """The levels of one row, float32 [L] (what ``levels()[row]`` holds, without the
        [R, L] table: 8-bit grids of a million groups are gigabytes)."""
        return self.levels()[row]

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lowest and highest level per row, float32 [R] each."""
        lv = self.levels()
        return lv[:, 0], lv[:, -1]
