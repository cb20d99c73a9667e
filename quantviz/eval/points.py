"""Evaluating a list of named configurations elsewhere: the executor contract and its events.

A sweep (:func:`~quantviz.eval.uniform_sweep`, :func:`~quantviz.eval.sensitivity`) evaluates
its points one after the other in this process unless it is given a :class:`PointExecutor`
(the Ray one is :class:`quantviz.eval.cluster.Cluster`). An executor evaluates the points
wherever it likes and reports them *as they finish*: a
:class:`~quantviz.eval.results.PointDone` per point (``index`` is the point's place in the
list, ``completed`` how many have finished), a :class:`PointFailed` for a point whose
evaluation raised (the other points go on), a :class:`PointRetried` when a point had to be
recomputed because the process running it died, and :class:`TasksStatus` (how many run and
wait). Its ``run`` returns one outcome per point, in the points' order: an
:class:`~quantviz.eval.results.EvalResult` or a :class:`PointFailed`.
"""

from __future__ import annotations

from collections.abc import Generator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from quantviz.core import ModelConfig
from quantviz.eval.results import Baseline, EvalResult

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = ["Outcome", "PointExecutor", "PointFailed", "PointRetried", "TasksStatus"]


@dataclass(frozen=True)
class PointFailed:
    """Point ``index`` (of ``total``, named ``name``) could not be evaluated: ``error``."""

    index: int
    total: int
    name: str
    error: str
    completed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "error": self.error}


@dataclass(frozen=True)
class PointRetried:
    """Point ``index`` was computed again (``attempts`` in all): its worker process died."""

    index: int
    total: int
    name: str
    attempts: int


@dataclass(frozen=True)
class TasksStatus:
    """``running`` points are being evaluated, ``waiting`` wait for a worker, ``completed``
    of ``total`` have finished (done or failed)."""

    running: int
    waiting: int
    completed: int
    total: int

    def text(self) -> str:
        return (
            f"{self.running} running, {self.waiting} waiting, "
            f"{self.completed}/{self.total} finished"
        )


Outcome = EvalResult | PointFailed


class PointExecutor(Protocol):
    """Evaluates named configurations of one model on one data set (see the module doc)."""

    def run(
        self,
        handle: ModelHandle,
        data: EvalData,
        points: Sequence[tuple[str, ModelConfig]],
        *,
        baseline: Baseline,
        stats: MutableMapping[str, LayerStats],
        batch_size: int = 256,
    ) -> Generator[Any, None, list[Outcome]]: ...
