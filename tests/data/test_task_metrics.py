"""Metrics against hand computation; streaming equals one-shot."""

from __future__ import annotations

import math

import pytest
import torch

from quantviz.data import MetricAccumulator, fidelity, topk_accuracy

LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 2.0], [0.0, 1.0, 0.5]])
Y = torch.tensor([0, 2, 2, 0])


def test_topk_by_hand():
    assert topk_accuracy(LOGITS, Y, 1) == 0.5  # rows 0 and 2
    assert topk_accuracy(LOGITS, Y, 2) == 0.75  # row 1: label 2 is second; row 3: 0 is last
    assert topk_accuracy(LOGITS, Y, 10) == 1.0
    with pytest.raises(ValueError, match="k: must be"):
        topk_accuracy(LOGITS, Y, 0)
    with pytest.raises(ValueError, match="y:"):
        topk_accuracy(LOGITS, Y[:3], 1)


def test_fidelity_by_hand():
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    q = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    f = fidelity(q, ref)
    assert f["top1_agreement"] == 0.5  # row 1: argmax 0 (tie -> first) vs 1
    assert f["cosine"] == pytest.approx((1.0 + 1 / math.sqrt(2)) / 2)
    # row 0 identical -> KL 0; row 1: p = softmax(0,1), q = (1/2, 1/2)
    p1 = math.exp(1) / (1 + math.exp(1))
    p0 = 1 - p1
    kl1 = p0 * math.log(p0 / 0.5) + p1 * math.log(p1 / 0.5)
    assert f["kl"] == pytest.approx(kl1 / 2)
    same = fidelity(ref, ref)
    assert same["top1_agreement"] == 1.0 and same["kl"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="shape"):
        fidelity(q, ref[:1])


def test_accumulator_streams_like_one_shot():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(103, 12, generator=gen)
    ref = logits + 0.3 * torch.randn(103, 12, generator=gen)
    y = torch.randint(0, 12, (103,), generator=gen)
    acc = MetricAccumulator(12)
    for i in range(0, 103, 10):
        acc.update(logits[i : i + 10], y[i : i + 10], ref[i : i + 10])
    r = acc.result()
    assert r["metric"] == "accuracy" and r["n"] == 103
    assert r["value"] == pytest.approx(topk_accuracy(logits, y, 1))
    assert r["top5"] == pytest.approx(topk_accuracy(logits, y, 5))
    one = fidelity(logits, ref)
    for key in ("top1_agreement", "cosine", "kl"):
        assert r[key] == pytest.approx(one[key], rel=1e-9)


def test_accumulator_without_labels_and_few_classes():
    acc = MetricAccumulator()
    acc.update(LOGITS, None, LOGITS.flip(0))
    r = acc.result()
    assert r["metric"] == "top1_agreement" and "accuracy" not in r
    assert set(r) >= {"value", "cosine", "kl", "n"}
    lab = MetricAccumulator(3)
    lab.update(LOGITS, Y)
    assert "top5" not in lab.result() and lab.result()["value"] == 0.5
    with pytest.raises(ValueError, match="no batches"):
        MetricAccumulator().result()
    with pytest.raises(ValueError, match="needs labels"):
        MetricAccumulator().update(LOGITS)


def test_fidelity_on_dense_outputs():
    ref = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    f = fidelity(ref, ref)
    assert f["top1_agreement"] == 1.0 and f["cosine"] == pytest.approx(1.0)
