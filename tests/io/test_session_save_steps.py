"""Saving a session step by step (save_session_steps): the streamed weights file is a
safetensors file (read back by safetensors itself), progress is monotone, and a save closed
half-way (a cancel) leaves the previous files as they were."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec  # noqa: E402
from quantviz.io import session_file  # noqa: E402
from quantviz.io.session_file import (  # noqa: E402
    SessionData,
    SessionFileError,
    load_session,
    save_session,
    save_session_steps,
)

W2 = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=2, granularity="per_channel")))


def _session(weights, *, copies: bool = False) -> SessionData:
    configs = {"default": ModelConfig(), "w2": W2, "w2 qat": W2}
    tuned = {"w2 qat": weights}
    if copies:
        configs["w2 qat (copy)"] = W2
        tuned["w2 qat (copy)"] = weights  # one set, shared
    return SessionData(model="m.pt2", data=None, configs=configs, current="w2 qat", tuned=tuned)


def _weights(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {
        "fc1.weight": torch.randn(33, 17, generator=g),
        "fc1.bias": torch.randn(33, generator=g).half(),
        "fc2.weight": torch.randn(5, 33, generator=g).bfloat16(),
        "fc2.bias": torch.randn(5, generator=g, dtype=torch.float64),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(1.5),
        "strided": torch.randn(8, 6, generator=g).t(),  # not contiguous
    }


def test_streamed_file_is_safetensors(tmp_path, monkeypatch):
    monkeypatch.setattr(session_file, "CHUNK_BYTES", 64)  # many chunks, split tensors
    w = _weights()
    path = tmp_path / "s.quantviz"
    steps = list(save_session_steps(path, _session(w, copies=True)))
    fr = [p.fraction for p in steps]
    assert fr == sorted(fr) and fr[0] > 0 and fr[-1] <= 1
    assert {p.stage for p in steps} == {"hash weights", "write weights", "write session"}
    doc = json.loads(path.read_text())
    wfile = tmp_path / doc["tuned"]["file"]
    raw = wfile.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == doc["tuned"]["sha256"]
    assert doc["tuned"]["configs"] == {"w2 qat": 0, "w2 qat (copy)": 0}
    # safetensors reads it (independent of our writer): every tensor, dtype and shape
    got = safetensors_torch.load_file(str(wfile))
    assert set(got) == {f"0/{k}" for k in w}
    for k, t in w.items():
        assert got[f"0/{k}"].dtype == t.dtype and torch.equal(got[f"0/{k}"], t), k
    back = load_session(path)
    assert back.tuned["w2 qat"] is back.tuned["w2 qat (copy)"]


def test_non_float_weights_are_refused_naming_them(tmp_path):
    w = {"fc1.weight": torch.ones(2, 2, dtype=torch.int8)}
    with pytest.raises(SessionFileError, match=r"tuned\.w2 qat: fc1\.weight: not a float"):
        save_session(tmp_path / "s.quantviz", _session(w))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("stop_at", ["hash weights", "write weights", "write session"])
def test_closed_half_way_leaves_the_previous_save(tmp_path, monkeypatch, stop_at):
    monkeypatch.setattr(session_file, "CHUNK_BYTES", 64)
    path = tmp_path / "s.quantviz"
    save_session(path, _session(_weights(0)))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    gen = save_session_steps(path, _session(_weights(1)))
    for p in gen:
        if p.stage == stop_at and (p.done > 64 or stop_at == "write session"):
            break
    gen.close()  # what a cancel does
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    back = load_session(path)
    assert torch.equal(back.tuned["w2 qat"]["fc1.weight"], _weights(0)["fc1.weight"])
