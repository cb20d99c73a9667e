"""What a transform is given: the model, its traced graph and the calibration inputs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from quantviz.core import ModelConfig
from quantviz.eval.transforms.graph import ModelGraph, model_graph

if TYPE_CHECKING:
    from quantviz.model.handle import ModelHandle

__all__ = ["MAX_CALIB_SAMPLES", "TransformContext"]

#: Calibration samples the data-driven transforms and roundings use at most.
MAX_CALIB_SAMPLES = 1024


@dataclass
class TransformContext:
    handle: ModelHandle
    config: ModelConfig
    calib_x: torch.Tensor | None
    batch_size: int = 256
    _graph: ModelGraph | None = field(default=None, repr=False)

    @property
    def graph(self) -> ModelGraph:
        if self._graph is None:
            self._graph = model_graph(self.handle)
        return self._graph

    def need_data(self, what: str) -> torch.Tensor:
        x = self.calib_x
        if x is None or int(x.shape[0]) == 0:
            raise ValueError(
                f"{what}: needs calibration inputs (give evaluation data, e.g. --data); "
                f"{self.handle.name} has none"
            )
        return x[:MAX_CALIB_SAMPLES]

    def batches(self, what: str) -> list[torch.Tensor]:
        x = self.need_data(what)
        dev = self.handle.example_input.device
        dtype = self.handle.example_input.dtype
        return [
            x[i : i + self.batch_size].to(device=dev, dtype=dtype)
            for i in range(0, int(x.shape[0]), self.batch_size)
        ]

    def run(self, what: str) -> Iterator[int]:
        """Forward every calibration batch (no grad); yields the batch index after each."""
        bl = self.batches(what)
        for i, b in enumerate(bl, start=1):
            with torch.no_grad():
                self.handle.module(b)
            yield i
