"""W8A8 static quantization against an independent torch fake-quant, library and CLI alike.

quantviz quantizes activations at the INPUT of every quantized layer (a forward pre-hook,
static: scale / zero point fitted once on the calibration data). The reference here is
built from torch alone: ``MinMaxObserver`` (per-tensor symmetric qint8) on each conv /
linear layer's input over the calibration data, ``torch.fake_quantize_per_tensor_affine``
of that input in the quantized forward, and ``PerChannelMinMaxObserver`` +
``torch.fake_quantize_per_channel_affine`` for the weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from models import efficientnet_lite_small, handle_of
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.data.datasets import EvalData
from quantviz.eval import calibrate, evaluate, needs_calibration, run
from quantviz.eval.apply import apply_config

ROOT = Path(__file__).resolve().parents[2]

W8A8 = ModelConfig(
    default=LayerConfig(
        weight=QuantSpec(bits=8, granularity="per_channel"), activation=QuantSpec(bits=8)
    )
)


def _torch_reference(
    model: torch.nn.Module, calib: torch.Tensor, x: torch.Tensor, bs: int, calib_bs: int = 7
):
    """Logits of the W8A8 fake-quantized model, computed with torch's observers only.

    ``calib_bs``: the calibration batches. Min/max do not depend on the batching in exact
    arithmetic, but a conv's float rounding does (the kernel varies with the batch shape),
    and a scale one ulp apart flips a value sitting on a rounding boundary one step, which
    50 quantized layers carry to the logits; so the test calibrates in the same batches as
    the library run it checks."""
    layers = {
        n: m for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    }
    obs = {n: MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric) for n in layers}
    hooks = [
        m.register_forward_pre_hook(lambda _m, a, n=n: obs[n](a[0])) for n, m in layers.items()
    ]
    with torch.no_grad():
        for i in range(0, calib.shape[0], calib_bs):
            model(calib[i : i + calib_bs])
    for h in hooks:
        h.remove()
    saved = {}

    def fq_input(n):
        s, z = obs[n].calculate_qparams()

        def hook(_m, a):
            return (torch.fake_quantize_per_tensor_affine(a[0], float(s), int(z), -128, 127),)

        return hook

    try:
        for n, m in layers.items():
            w = m.weight.detach()
            o = PerChannelMinMaxObserver(
                ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric
            )
            o(w)
            s, z = o.calculate_qparams()
            saved[n] = m.weight.data
            m.weight.data = torch.fake_quantize_per_channel_affine(w, s, z.int(), 0, -128, 127)
        hooks = [m.register_forward_pre_hook(fq_input(n)) for n, m in layers.items()]
        with torch.no_grad():
            return torch.cat([model(x[i : i + bs]) for i in range(0, x.shape[0], bs)])
    finally:
        for h in hooks:
            h.remove()
        for n, m in layers.items():
            m.weight.data = saved.get(n, m.weight.data)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1).mean())


@pytest.fixture(scope="module")
def setup():
    model = efficientnet_lite_small()
    g = torch.Generator().manual_seed(11)
    calib = torch.randn(40, 3, 32, 32, generator=g)
    x = torch.randn(24, 3, 32, 32, generator=g)
    with torch.no_grad():
        ref_float = model(x)
    ref_q = _torch_reference(model, calib, x, 8)
    return model, calib, x, ref_float, ref_q


@pytest.mark.parametrize("batch_size", [5, 16, 256])
def test_library_matches_torch_fake_quant_at_layer_inputs(setup, batch_size):
    model, calib, x, ref_float, _ = setup
    ref_q = _torch_reference(model, calib, x, 8, calib_bs=batch_size)
    handle = handle_of(model, x[:1])
    data = EvalData(name="t", x=x, y=None, calib_x=calib)
    stats: dict = {}
    run(calibrate(handle, data, needs_calibration(handle, W8A8), stats, batch_size=batch_size))
    assert len(stats) == len(handle.fqns) == 50  # every conv / linear input is quantized
    with torch.no_grad(), apply_config(handle, W8A8, stats=stats) as applied:
        assert set(applied.activations.values()) == {"static"}
        out = torch.cat([model(x[i : i + 8]) for i in range(0, x.shape[0], 8)])
    # the same numbers (float rounding of the conv arithmetic aside), whatever the batching
    # of the calibration pass (the reference calibrates in the same batches)
    torch.testing.assert_close(out, ref_q, rtol=1e-4, atol=1e-4 * float(ref_q.abs().max()))
    r = run(evaluate(handle, data, W8A8, batch_size=batch_size))
    # 1e-5: the outputs agree to 1e-4 relative (conv kernels differ with the thread count)
    assert r.cosine == pytest.approx(_cosine(ref_q, ref_float), abs=1e-5)
    # and W8A8 is not weight-only: activation quantization moves the output measurably
    with (
        torch.no_grad(),
        apply_config(handle, ModelConfig(default=LayerConfig(weight=W8A8.default.weight))),
    ):
        w_only = model(x)
    assert (w_only - ref_q).abs().max() > 1e-3 * ref_q.abs().max()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "quantviz", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def test_cli_matches_library_and_torch_reference(setup, tmp_path):
    model, calib, x, ref_float, ref_q = setup
    np.savez(tmp_path / "d.npz", x=x.numpy(), calib_x=calib.numpy())
    cfg = {
        "format": "quantviz-config",
        "version": 1,
        "default": {
            "weight": {"bits": 8, "granularity": "per_channel"},
            "activation": {"bits": 8},
        },
    }
    (tmp_path / "w8a8.json").write_text(json.dumps(cfg))
    sidecar = json.dumps({"input_shape": [1, 3, 32, 32]})
    torch.save(model.state_dict(), tmp_path / "m.pt")
    (tmp_path / "m.pt.json").write_text(sidecar)
    want = _cosine(ref_q, ref_float)
    p = _cli(
        "eval",
        "--model",
        "m.pt::tests.models:efficientnet_lite_small",
        "--data",
        "d.npz",
        "--config",
        "w8a8.json",
        "--json",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["cosine"] == pytest.approx(want, abs=1e-5)
    # TorchScript: the same number, or a clear refusal, never a weight-only result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
        torch.jit.save(torch.jit.script(model), tmp_path / "m.ts")
    (tmp_path / "m.ts.json").write_text(sidecar)
    p = _cli(
        "eval",
        "--model",
        "m.ts",
        "--data",
        "d.npz",
        "--config",
        "w8a8.json",
        "--json",
        cwd=tmp_path,
    )
    if p.returncode == 0:
        assert json.loads(p.stdout)["cosine"] == pytest.approx(want, abs=1e-5)
    else:
        assert "TorchScript" in p.stderr
