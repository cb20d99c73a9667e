"""PerplexityAccumulator works in chunks of at most ``chunk_values`` logits (whole sequences
or runs of positions of one sequence): the same numbers as torch on the whole batch."""

from __future__ import annotations

import pytest
import torch

from quantviz.data.metrics import PerplexityAccumulator


@pytest.mark.parametrize(
    "chunk_values",
    [1, 7, 50, 8 * 50, 3 * 8 * 50, 1 << 21],
    ids=["one-logit", "under-a-row", "one-position", "one-sequence", "all", "default"],
)
def test_chunked_metrics_equal_torch_on_the_whole_batch(chunk_values):
    g = torch.Generator().manual_seed(0)
    b, t, v = 3, 9, 50
    logits = torch.randn(b, t, v, generator=g)
    ref = logits + 0.5 * torch.randn(b, t, v, generator=g)
    ids = torch.randint(0, v, (b, t), generator=g)
    acc = PerplexityAccumulator(chunk_values=chunk_values)
    acc.update(logits[:2], ids[:2], ref[:2])
    acc.update(logits[2:], ids[2:], ref[2:])
    r = acc.result()
    lq = torch.log_softmax(logits[:, :-1].double(), -1)
    lp = torch.log_softmax(ref[:, :-1].double(), -1)
    nll = float(torch.nn.functional.cross_entropy(lq.reshape(-1, v), ids[:, 1:].reshape(-1)))
    kl = torch.nn.functional.kl_div(lq, lp, log_target=True, reduction="none").sum(-1).mean()
    agree = (lp.argmax(-1) == lq.argmax(-1)).double().mean()
    assert r["n_tokens"] == b * (t - 1) and r["n"] == b
    assert r["nll"] == pytest.approx(nll, rel=1e-12)
    assert r["kl"] == pytest.approx(float(kl), rel=1e-12)
    assert r["top1_agreement"] == float(agree)


def test_out_of_vocabulary_ids_are_refused_whatever_the_chunks():
    acc = PerplexityAccumulator(chunk_values=4)
    ids = torch.tensor([[1, 2, 9]])
    with pytest.raises(ValueError, match=r"ids: token ids span 2\.\.9, outside the model's 5"):
        acc.update(torch.zeros(1, 3, 5), ids)
