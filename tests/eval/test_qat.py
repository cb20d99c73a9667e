"""Quantization-aware fine-tuning: STE, LSQ, PACT (issue 13).

LSQ's forward and gradients are compared with torch's own learnable fake-quant kernels;
whole-model results with the bundled digits model; the loaded model is never modified.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.data import load_data
from quantviz.eval.evaluate import evaluate, run
from quantviz.eval.qat import QatOptions, _LsqWeight, _PactWeight, finetune, swapped_weights
from quantviz.model import load_model

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*:DeprecationWarning")

W2 = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=2, granularity="per_channel")))


@pytest.fixture(scope="module")
def digits():
    h = load_model("sample:digits_cnn")
    return h, load_data(None, h)


def _snapshot(h):
    return {k: v.detach().clone() for k, v in h.module.state_dict().items()}


def _same(h, snap) -> None:
    now = h.module.state_dict()
    assert set(now) == set(snap)
    for k, v in snap.items():
        assert torch.equal(now[k], v), k


@pytest.mark.parametrize(
    ("sym", "gran"), [(True, "per_channel"), (False, "per_channel"), (True, "per_tensor")]
)
def test_lsq_matches_torch_learnable_fake_quant(sym, gran):
    torch.manual_seed(0)
    w = torch.randn(6, 10)
    spec = QuantSpec(bits=4, granularity=gran, symmetric=sym)
    m = _LsqWeight(w, spec)
    with torch.no_grad():
        m.scale.mul_(0.83)  # some values clip; no value lands on a rounding tie
    x = w.clone().requires_grad_(True)
    grad_out = torch.randn(6, 10)
    (m(x) * grad_out).sum().backward()
    qmin, qmax = spec.qrange
    s = m.scale.detach().clone().requires_grad_(True)
    x2 = w.clone().requires_grad_(True)
    if gran == "per_channel":
        y2 = torch._fake_quantize_learnable_per_channel_affine(
            x2, s, m.zp.clone(), 0, qmin, qmax, m.g
        )
    else:
        y2 = torch._fake_quantize_learnable_per_tensor_affine(x2, s, m.zp.clone(), qmin, qmax, m.g)
    (y2 * grad_out).sum().backward()
    torch.testing.assert_close(m(w), y2, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, x2.grad, rtol=0, atol=1e-6)
    torch.testing.assert_close(m.scale.grad, s.grad, rtol=1e-5, atol=1e-6)


def test_pact_clips_and_learns_alpha():
    torch.manual_seed(0)
    w = torch.randn(4, 16)
    spec = QuantSpec(bits=3, granularity="per_channel", symmetric=True)
    m = _PactWeight(w, spec)
    with torch.no_grad():
        m.alpha.mul_(0.5)
    y = m(w)
    a = m.alpha.detach()[:, None]
    s = a / 3.5  # quantviz's symmetric grid: range / half the code span ((3 - -4) / 2)
    expected = torch.clamp(torch.round(torch.clamp(w, -a, a) / s), -4, 3) * s
    torch.testing.assert_close(y, expected)
    y.sum().backward()
    # d/dalpha: values clipped at +alpha pull it, at -alpha push it (PACT's gradient)
    assert m.alpha.grad is not None and torch.isfinite(m.alpha.grad).all()
    # the kept weight re-fits (min/max) to the learned grid wherever a row reaches alpha
    from quantviz.core import quantize

    kept = m.keep(w)
    torch.testing.assert_close(quantize(kept, spec).dequantized, y.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["ste", "lsq", "pact"])
def test_qat_recovers_w2_digits(digits, method):
    h, data = digits
    snap = _snapshot(h)
    events = []
    gen = finetune(h, data, W2, QatOptions(epochs=3, method=method))
    res = None
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            res = stop.value
            break
    qat = [e for e in events if e.stage == "qat"]
    assert [e.done for e in qat] == list(range(1, len(qat) + 1)) and qat[-1].done == qat[-1].total
    assert res.before.value < 0.75  # W2 per-channel on the float weights (66.7 %)
    assert res.after.value >= 0.9 and res.after.value > res.before.value + 0.2
    assert res.after.baseline == res.before.baseline  # the original float model's accuracy
    assert not res.distilled and res.train_samples == 1181
    _same(h, snap)  # the loaded model is untouched
    # the kept weights, evaluated again from scratch, give the reported value
    with swapped_weights(h, res.weights):
        again = run(evaluate(h, data, W2))
    assert again.value == res.after.value
    _same(h, snap)


def test_cancel_leaves_the_model_as_it_was(digits):
    h, data = digits
    snap = _snapshot(h)
    hooks_before = sum(len(m._forward_pre_hooks) for m in h.module.modules())
    gen = finetune(h, data, W2, QatOptions(epochs=2))
    for ev in gen:
        if ev.stage == "qat" and ev.done == 5:
            break
    gen.close()
    _same(h, snap)
    assert sum(len(m._forward_pre_hooks) for m in h.module.modules()) == hooks_before


def test_distillation_without_labels(digits):
    h, data = digits
    from quantviz.data.datasets import EvalData

    unlabeled = EvalData(name="calib only", x=data.x, y=data.y, calib_x=data.calib_x)
    res = run(finetune(h, unlabeled, W2, QatOptions(epochs=2)))
    assert res.distilled and res.train_samples == data.calib_x.shape[0]
    assert res.to_dict()["loss"] == "kl_to_float"
    assert res.after.value > res.before.value


def test_bad_requests(digits, tmp_path):
    h, data = digits
    with pytest.raises(ValueError, match="epochs: must be 1..1000"):
        QatOptions(epochs=0)
    with pytest.raises(ValueError, match="method: must be one of"):
        QatOptions(method="sgd")
    nf4 = ModelConfig(default=LayerConfig(weight=QuantSpec(quantizer="nf4", bits=4)))
    with pytest.raises(ValueError, match=r"layer conv1: weight: lsq learns a uniform grid"):
        run(finetune(h, data, nf4, QatOptions(method="lsq")))
    asym = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=4, symmetric=False)))
    with pytest.raises(ValueError, match="layer conv1: weight: symmetric: pact"):
        run(finetune(h, data, asym, QatOptions(method="pact")))
    ts = tmp_path / "m.ts"
    torch.jit.save(torch.jit.trace(h.module, h.example_input), str(ts))
    hts = load_model(str(ts), input_shape=(1, 1, 8, 8))
    with pytest.raises(ValueError, match="qat trains an eager PyTorch model; this one is torch"):
        run(finetune(hts, data, W2))


@pytest.mark.slow
def test_cli_qat_document_and_weights(tmp_path):
    cfg = tmp_path / "w2.json"
    cfg.write_text(
        json.dumps(
            {
                "format": "quantviz-config",
                "version": 2,
                "default": {"weight": {"bits": 2, "granularity": "per_channel"}},
            }
        )
    )
    out = tmp_path / "tuned.safetensors"
    cmd = [sys.executable, "-m", "quantviz", "qat", "--model", "sample:digits_cnn", "-c"]
    p = subprocess.run(
        [*cmd, str(cfg), "--epochs", "2", "--save-weights", str(out), "--json", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["method"] == "ste" and doc["epochs"] == 2 and doc["weights_file"] == str(out)
    assert doc["before"] < doc["value"] and 0.9 < doc["baseline"] <= 1
    # the written weights open through the factory syntax and evaluate to the same value
    p2 = subprocess.run(
        [
            sys.executable,
            "-m",
            "quantviz",
            "eval",
            "--model",
            f"{out}::quantviz.model.samples:DigitsCNN",
            "--data",
            "sample:digits",
            "-c",
            str(cfg),
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p2.returncode == 0, p2.stderr
    assert json.loads(p2.stdout)["value"] == doc["value"]
    bad = subprocess.run(
        [*cmd, str(cfg), "--save-weights", str(tmp_path / "w.bin")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode == 2 and "--save-weights" in bad.stderr and "safetensors" in bad.stderr
