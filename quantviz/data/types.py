"""The evaluation data container and its error type (shared by datasets and tokens)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

__all__ = ["DataError", "EvalData"]


class DataError(ValueError):
    """Evaluation data that cannot be used; the message names the file and the field."""


@dataclass
class EvalData:
    """Evaluation inputs ``x`` [N, ...], labels ``y`` [N] int64 (or None), calibration inputs.

    ``task`` is ``"causal_lm"`` for token sequences of a language model (``x`` int64 [N, T];
    the labels are ``x`` itself, shifted by one: next-token prediction), else ``""``.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor | None
    calib_x: torch.Tensor
    task: str = ""
    #: a training split (``sample:digits``; ``train_x`` / ``train_y`` in a file), for QAT only
    train_x: torch.Tensor | None = None
    train_y: torch.Tensor | None = None

    @property
    def n_tokens(self) -> int:
        """Predicted positions of token data (``N * (T - 1)``); 0 for other data."""
        if not self.task or self.x.dim() != 2:
            return 0
        return int(self.x.shape[0]) * max(int(self.x.shape[1]) - 1, 0)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def has_labels(self) -> bool:
        return self.y is not None

    def batches(self, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Consecutive ``(x, y)`` batches (``y`` None without labels); views, no copies."""
        _check_batch_size(batch_size)
        for i in range(0, len(self), batch_size):
            yield self.x[i : i + batch_size], None if self.y is None else self.y[i : i + batch_size]

    def calib_batches(self, batch_size: int = 256) -> Iterator[torch.Tensor]:
        """Consecutive batches of the calibration inputs."""
        _check_batch_size(batch_size)
        for i in range(0, int(self.calib_x.shape[0]), batch_size):
            yield self.calib_x[i : i + batch_size]

    def num_batches(self, batch_size: int = 256) -> int:
        return -(-len(self) // batch_size)

    def num_calib_batches(self, batch_size: int = 256) -> int:
        return -(-int(self.calib_x.shape[0]) // batch_size)


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer, got {batch_size!r}")
