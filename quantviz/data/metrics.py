"""Task metrics: accuracy with labels, fidelity to the float model without.

:class:`MetricAccumulator` sums over batches so evaluation never keeps all outputs. With
labels its result's ``metric`` is ``"accuracy"`` (plus ``top5`` where there are more than
5 classes); without, ``"top1_agreement"`` with ``cosine`` and ``kl`` alongside. Logits are
``[N, C]``; outputs with more dimensions use dim 1 as the class dimension.

A causal language model is measured by :class:`PerplexityAccumulator` instead (metric
``"perplexity"``, lower is better): :func:`make_accumulator` picks one from the task.
:func:`higher_is_better` tells a metric's direction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

__all__ = [
    "LOWER_IS_BETTER",
    "MetricAccumulator",
    "PerplexityAccumulator",
    "fidelity",
    "higher_is_better",
    "make_accumulator",
    "topk_accuracy",
]

#: metrics where a smaller value is better (everything else: larger is better)
LOWER_IS_BETTER = frozenset({"perplexity", "nll", "kl", "loss"})


def higher_is_better(metric: str | None) -> bool:
    """The direction of ``metric``: False for perplexity (and losses), True otherwise."""
    return metric not in LOWER_IS_BETTER


def _as_2d(logits: torch.Tensor) -> torch.Tensor:
    """[N, C, *rest] -> [N * rest, C]; [N] -> [N, 1]."""
    if logits.dim() == 1:
        return logits[:, None]
    if logits.dim() > 2:
        return logits.movedim(1, -1).reshape(-1, logits.shape[1])
    return logits


def _check_pair(logits: torch.Tensor, ref: torch.Tensor) -> None:
    if logits.shape != ref.shape:
        raise ValueError(
            f"logits: shape {tuple(logits.shape)} differs from the reference {tuple(ref.shape)}"
        )


def _topk_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> int:
    if logits.dim() != 2:
        raise ValueError(f"logits: accuracy needs [N, C] outputs, got {tuple(logits.shape)}")
    if y.shape != logits.shape[:1]:
        raise ValueError(f"y: {tuple(y.shape)} labels for {logits.shape[0]} outputs")
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return int((top == y[:, None]).any(dim=1).sum())


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, k: int = 1) -> float:
    """Fraction of samples whose label is among the ``k`` largest logits."""
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    if logits.shape[0] == 0:
        raise ValueError("logits: empty batch")
    return _topk_correct(logits, y, k) / logits.shape[0]


def _fidelity_sums(logits: torch.Tensor, ref: torch.Tensor) -> tuple[int, float, float, int]:
    """(top-1 agreements, sum of per-sample cosines, sum of per-position KLs, positions)."""
    _check_pair(logits, ref)
    q, r = logits.detach().double(), ref.detach().double()
    flat_q, flat_r = q.reshape(q.shape[0], -1), r.reshape(r.shape[0], -1)
    cos = torch.nn.functional.cosine_similarity(flat_q, flat_r, dim=1, eps=1e-12)
    q2, r2 = _as_2d(q), _as_2d(r)
    agree = int((q2.argmax(1) == r2.argmax(1)).sum())
    log_p = torch.log_softmax(r2, dim=1)
    log_q = torch.log_softmax(q2, dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    return agree, float(cos.sum()), float(kl.clamp_min(0).sum()), int(q2.shape[0])


def fidelity(logits: torch.Tensor, ref_logits: torch.Tensor) -> dict[str, float]:
    """Agreement of ``logits`` with the float model's ``ref_logits``.

    ``top1_agreement``: fraction of equal argmax; ``cosine``: mean per-sample cosine
    similarity of the outputs; ``kl``: mean KL(softmax(ref) || softmax(logits)) in nats.
    """
    if logits.shape[0] == 0:
        raise ValueError("logits: empty batch")
    agree, cos, kl, n_pos = _fidelity_sums(logits, ref_logits)
    return {
        "top1_agreement": agree / n_pos,
        "cosine": cos / logits.shape[0],
        "kl": kl / n_pos,
    }


class MetricAccumulator:
    """Streaming metrics over batches: ``update(logits, y, ref_logits)`` then ``result()``.

    ``y`` may be None (no labels) and ``ref_logits`` None (no float reference); at least one
    must be given on every update, consistently.
    """

    def __init__(self, num_classes: int | None = None) -> None:
        self.num_classes = num_classes
        self.n = 0
        self.correct1 = 0
        self.correct5 = 0
        self.labelled = 0
        self.agree = 0
        self.cos_sum = 0.0
        self.kl_sum = 0.0
        self.positions = 0
        self.referenced = 0
        self.classes_seen = 0

    def update(
        self,
        logits: torch.Tensor,
        y: torch.Tensor | None = None,
        ref_logits: torch.Tensor | None = None,
    ) -> None:
        """Add one batch."""
        if y is None and ref_logits is None:
            raise ValueError("update: needs labels y or reference logits")
        n = int(logits.shape[0])
        self.n += n
        if logits.dim() >= 2:
            self.classes_seen = int(logits.shape[1])
        if y is not None:
            self.correct1 += _topk_correct(logits, y, 1)
            self.correct5 += _topk_correct(logits, y, 5)
            self.labelled += n
        if ref_logits is not None:
            agree, cos, kl, n_pos = _fidelity_sums(logits, ref_logits)
            self.agree += agree
            self.cos_sum += cos
            self.kl_sum += kl
            self.positions += n_pos
            self.referenced += n

    def result(self) -> dict[str, Any]:
        """``metric`` (name), ``value``, and every computed metric by name, plus ``n``."""
        if self.n == 0:
            raise ValueError("no batches were evaluated")
        out: dict[str, Any] = {"n": self.n}
        n_classes = self.num_classes or self.classes_seen
        if self.referenced:
            out["top1_agreement"] = self.agree / self.positions
            out["cosine"] = self.cos_sum / self.referenced
            out["kl"] = self.kl_sum / self.positions
        if self.labelled:
            out["accuracy"] = self.correct1 / self.labelled
            if n_classes > 5:
                out["top5"] = self.correct5 / self.labelled
            out["metric"], out["value"] = "accuracy", out["accuracy"]
        else:
            out["metric"], out["value"] = "top1_agreement", out["top1_agreement"]
        return out


class PerplexityAccumulator:
    """Streaming next-token metrics of a causal LM: ``update(logits, ids, ref_logits)``.

    ``logits`` are ``[B, T, V]`` for token ids ``ids`` ``[B, T]``; position ``t`` predicts
    token ``t + 1``, so every sequence has ``T - 1`` predicted positions (the labels are the
    ids, as ``transformers`` computes the loss with ``labels = input_ids``). The result:
    ``perplexity`` = exp(mean cross-entropy over all predicted positions), ``nll`` (that mean,
    nats), ``n_tokens`` (predicted positions); with the float model's ``ref_logits``, over
    the same positions: ``kl`` = mean KL(float || this) of the next-token distributions
    (nats) and ``top1_agreement`` = fraction of positions whose most likely next token is
    the float model's. Sums are float64; batches are processed in chunks of at most
    ``chunk_values`` logits (whole sequences, or positions of one sequence).
    """

    def __init__(self, chunk_values: int = 1 << 21) -> None:
        #: logits per float64 chunk (16 MiB): the few temporaries of a chunk stay small
        #: next to a large model whatever its vocabulary or the batch
        self.chunk_values = chunk_values
        self.n = 0
        self.n_tokens = 0
        self.nll_sum = 0.0
        self.kl_sum = 0.0
        self.agree = 0
        self.referenced = 0

    def update(
        self,
        logits: torch.Tensor,
        ids: torch.Tensor | None = None,
        ref_logits: torch.Tensor | None = None,
    ) -> None:
        """Add one batch (``ids`` are required: the next tokens are the labels)."""
        if ids is None:
            raise ValueError("update: a causal LM needs the token ids (its labels)")
        if logits.dim() != 3 or ids.dim() != 2 or tuple(logits.shape[:2]) != tuple(ids.shape):
            raise ValueError(
                f"logits: a causal LM's output must be [batch, tokens, vocabulary] for ids "
                f"{list(ids.shape)}, got {list(logits.shape)}"
            )
        if ref_logits is not None:
            _check_pair(logits, ref_logits)
        b, t, v = logits.shape
        if t < 2:
            raise ValueError(f"ids: sequences of {t} token predict nothing")
        ids = ids.to(logits.device)
        tgt_all = ids[:, 1:]
        if int(tgt_all.min()) < 0 or int(tgt_all.max()) >= v:
            raise ValueError(
                f"ids: token ids span {int(tgt_all.min())}..{int(tgt_all.max())}, outside the "
                f"model's {v} output logits"
            )
        for sl in _chunks(b, t - 1, v, self.chunk_values):
            lq = torch.log_softmax(logits[sl].double(), dim=-1)
            tgt = tgt_all[sl]
            self.nll_sum -= float(lq.gather(-1, tgt[..., None]).sum())
            if ref_logits is not None:
                lp = torch.log_softmax(ref_logits[sl].double(), dim=-1)
                kl = (lp.exp() * (lp - lq)).sum(-1).clamp_min(0)
                self.kl_sum += float(kl.sum())
                self.agree += int((lp.argmax(-1) == lq.argmax(-1)).sum())
                self.referenced += int(tgt.numel())
        self.n += int(b)
        self.n_tokens += int(b) * (t - 1)

    def result(self) -> dict[str, Any]:
        """``metric`` = ``"perplexity"``, ``value``, ``perplexity``, ``nll``, ``n``,
        ``n_tokens`` and, with references, ``kl`` and ``top1_agreement``."""
        if self.n_tokens == 0:
            raise ValueError("no batches were evaluated")
        nll = self.nll_sum / self.n_tokens
        ppl = math.exp(nll) if nll < 700 else math.inf
        out: dict[str, Any] = {
            "n": self.n,
            "n_tokens": self.n_tokens,
            "nll": nll,
            "perplexity": ppl,
            "metric": "perplexity",
            "value": ppl,
            "higher_is_better": False,
        }
        if self.referenced:
            out["kl"] = self.kl_sum / self.referenced
            out["top1_agreement"] = self.agree / self.referenced
        return out


def _chunks(b: int, n: int, v: int, values: int) -> Iterator[tuple[slice, slice]]:
    """Index pairs ``(sequences, positions)`` covering ``[b, n]`` predicted positions (the
    first ``n`` of each sequence) in chunks of at most ``values`` logits (``v`` each):
    several whole sequences, or a run of positions of one sequence."""
    per_seq = n * v
    if per_seq <= values:
        per = max(1, values // per_seq)
        for i in range(0, b, per):
            yield slice(i, i + per), slice(0, n)
        return
    step = max(1, values // v)
    for i in range(b):
        for p in range(0, n, step):
            yield slice(i, i + 1), slice(p, min(p + step, n))


def make_accumulator(
    task: str = "", num_classes: int | None = None
) -> MetricAccumulator | PerplexityAccumulator:
    """The accumulator of a model's task: perplexity for ``"causal_lm"``, else accuracy /
    agreement (:class:`MetricAccumulator`)."""
    if task == "causal_lm":
        return PerplexityAccumulator()
    return MetricAccumulator(num_classes)
