"""Fine-tuned (QAT) weights of a configuration (issue 13): saved in session files and read
back bit-identical, and what the views show of a fine-tuned configuration (histogram, SQNR
per layer, the compare table) is of its own weights. Numbers are checked against torch's
per-channel fake-quant on the fine-tuned tensors, computed here."""

from __future__ import annotations

import json
import math

import pytest
import torch

from quantviz.app import AppController, run_job
from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec

pytestmark = pytest.mark.slow  # one fine-tuning (about 7 s) shared by the module

W2 = QuantSpec(bits=2, granularity="per_channel")
W2_CONFIG = ModelConfig(default=LayerConfig(weight=W2))


@pytest.fixture(scope="module")
def tuned():
    """The bundled sample with 'w2' fine-tuned (one epoch of STE) as 'w2 qat-ste'."""
    from quantviz.eval.qat import QatOptions

    ctl = AppController()
    run_job(ctl.open_model_job("sample:digits_cnn"))
    ctl.collecting_stats = False
    s = ctl.session
    s.add_config("w2", W2_CONFIG)
    job = ctl.qat_job("w2", QatOptions(epochs=1, lr=0.01))
    res = run_job(job)
    assert job.meta["new"] == ctl.qat_config == "w2 qat-ste"
    return ctl, res


def _torch_w2(w: torch.Tensor) -> torch.Tensor:
    """Independent: torch's 2-bit symmetric per-channel fake-quant (min/max observer)."""
    obs = torch.ao.quantization.PerChannelMinMaxObserver(
        ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-2, quant_max=1
    )
    w2 = w.reshape(w.shape[0], -1)
    obs(w2)
    sc, zp = obs.calculate_qparams()
    fq = torch.fake_quantize_per_channel_affine(w2, sc, zp.to(torch.int32), 0, -2, 1)
    return fq.reshape(w.shape)


def _sqnr(w: torch.Tensor, fq: torch.Tensor) -> float:
    return 10 * math.log10(float((w.double() ** 2).sum()) / float(((fq - w).double() ** 2).sum()))


def test_qat_job_names_the_new_configuration(tuned):
    ctl, _ = tuned
    s = ctl.session
    assert ctl.qat_config in s.tuned and s.tuned[ctl.qat_config] is not None
    assert s.weights_tag("w2") == "" and s.weights_tag("w2 qat-ste").startswith("tuned#")


def test_views_of_a_tuned_configuration_show_its_weights(tuned):
    ctl, res = tuned
    s = ctl.session
    h = s.handle
    new = ctl.qat_config
    moved = 0
    for fqn in s.fqns:
        lay = h.layer(fqn)
        tw = res.weights[lay.param_name]  # the fine-tuned tensor, stored layout
        orig = h.quant_weight(fqn).detach()
        moved += not torch.equal(tw, orig)
        # histogram view of the tuned configuration: its weights' ranges and error
        d = ctl.layer_view(fqn, None, -1, ..., name=new)
        assert d.extra["weights"] == "fine-tuned"
        rows = tw.reshape(tw.shape[0], -1)
        assert torch.equal(torch.as_tensor(d.chan_min).float(), rows.amin(1))
        assert torch.equal(torch.as_tensor(d.chan_max).float(), rows.amax(1))
        assert d.main.sqnr_db == pytest.approx(_sqnr(tw, _torch_w2(tw)), abs=1e-3)
        # ... and of the original configuration: the loaded weights
        d0 = ctl.layer_view(fqn, None, -1, ..., name="w2")
        assert "weights" not in d0.extra
        assert d0.main.sqnr_db == pytest.approx(_sqnr(orig, _torch_w2(orig)), abs=1e-3)
    assert moved == len(s.fqns)  # the fine-tuning changed every layer


def test_layer_sqnr_of_the_current_tuned_configuration(tuned):
    ctl, res = tuned
    s = ctl.session
    h = s.handle
    new = ctl.qat_config
    ctl.sqnr.clear()
    s.make_current(new)
    try:
        todo = ctl.sqnr_todo()
        assert [t[0] for t in todo] == s.fqns and {t[2] for t in todo} == {s.weights_tag(new)}
        run_job(ctl.sqnr_job(todo))
        assert ctl.sqnr_todo() == []
        for fqn in s.fqns:
            tw = res.weights[h.layer(fqn).param_name]
            assert ctl.layer_sqnr(fqn) == pytest.approx(_sqnr(tw, _torch_w2(tw)), abs=1e-3)
        # the same scheme on the loaded weights is another, still unknown, number
        s.make_current("w2")
        assert all(ctl.layer_sqnr(f) is None for f in s.fqns)
        run_job(ctl.sqnr_job(ctl.sqnr_todo()))
        for fqn in s.fqns:
            orig = h.quant_weight(fqn).detach()
            assert ctl.layer_sqnr(fqn) == pytest.approx(_sqnr(orig, _torch_w2(orig)), abs=1e-3)
        # the compare table: one column per configuration, each on its own weights
        from quantviz.app.compare import layer_rows

        rows = layer_rows(s, ctl, ["w2", new])
        for r in rows:
            tw = res.weights[h.layer(r.fqn).param_name]
            assert r.sqnr[1] == pytest.approx(_sqnr(tw, _torch_w2(tw)), abs=1e-3)
            assert r.sqnr[0] == ctl.sqnr_under(r.fqn, W2)
            assert r.sqnr[0] != r.sqnr[1]
    finally:
        s.make_current("default")


def test_session_file_keeps_the_fine_tuned_weights(tuned, tmp_path):
    """QAT, save the session, reopen it in a fresh controller: the weights are bit-identical
    and the tuned configuration evaluates to the same accuracy; a copy shares them."""
    ctl, res = tuned
    s = ctl.session
    new = ctl.qat_config
    copy = s.duplicate(new)
    try:
        path = tmp_path / "study.quantviz"
        ctl.save_session(str(path))
        doc = json.loads(path.read_text())
        assert doc["version"] == 2
        ref = doc["tuned"]
        assert ref["configs"] == {new: 0, copy: 0}  # the copy's weights are written once
        wfile = tmp_path / ref["file"]
        assert wfile.is_file() and ref["file"].startswith("study.quantviz.tuned-")
        # saved again after a change: one weights file, the one the session names
        s.add_config("other", W2_CONFIG)
        ctl.save_session(str(path))
        files = sorted(p.name for p in tmp_path.iterdir())
        assert files == sorted(["study.quantviz", json.loads(path.read_text())["tuned"]["file"]])

        fresh = AppController()
        run_job(fresh.open_session_job(str(path)))
        s2 = fresh.session
        assert set(s2.tuned) == {new, copy} and s2.tuned[new] is s2.tuned[copy]
        assert set(s2.tuned[new]) == set(res.weights)
        for k, t in res.weights.items():
            got = s2.tuned[new][k]
            assert got.dtype == t.dtype and torch.equal(got, t), k
        again = run_job(fresh.evaluate_job(new))
        assert again.result.value == res.after.value
        plain = run_job(fresh.evaluate_job("w2"))
        assert plain.result.value == res.before.value
    finally:
        for n in (copy, "other"):
            if n in s.configs:
                s.delete(n)


def _saved(ctl, tmp_path):
    path = tmp_path / "s.quantviz"
    ctl.save_session(str(path))
    return path, tmp_path / json.loads(path.read_text())["tuned"]["file"]


def test_missing_or_corrupt_weights_file_refuses_the_session(tuned, tmp_path):
    """The whole session is refused, naming the weights file; the open session is kept."""
    from quantviz.io.session_file import SessionFileError

    ctl, _ = tuned
    path, wfile = _saved(ctl, tmp_path)
    other = AppController()
    run_job(other.open_model_job("sample:digits_cnn"))
    other.session.add_config("mine", W2_CONFIG)
    before = dict(other.session.configs)

    data = wfile.read_bytes()
    wfile.write_bytes(data[:-7] + b"garbage")  # altered
    with pytest.raises(SessionFileError, match="SHA-256 differs") as e:
        other.open_session_job(str(path))
    assert str(wfile) in str(e.value) and "w2 qat-ste" in str(e.value)

    wfile.unlink()  # missing
    with pytest.raises(SessionFileError, match="no such file") as e:
        other.open_session_job(str(path))
    assert str(wfile) in str(e.value)

    # not a safetensors file, with the hash the session names
    import hashlib

    junk = b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}"
    wfile.write_bytes(junk)
    doc = json.loads(path.read_text())
    doc["tuned"]["sha256"] = hashlib.sha256(junk).hexdigest()
    path.write_text(json.dumps(doc))
    with pytest.raises(SessionFileError, match="not a safetensors file") as e:
        other.open_session_job(str(path))
    assert str(wfile) in str(e.value)

    # a path instead of a file name beside the session: refused, naming the field
    doc["tuned"]["file"] = "../elsewhere.safetensors"
    path.write_text(json.dumps(doc))
    with pytest.raises(SessionFileError, match="tuned.file"):
        other.open_session_job(str(path))
    assert other.session.configs == before and other.session.tuned == {}


def test_tuned_weights_of_another_model_are_refused(tuned, tmp_path):
    """Weights that do not fit the session's model: refused in the job, nothing changes."""
    from safetensors.torch import save_file

    ctl, _ = tuned
    path, _ = _saved(ctl, tmp_path)
    bad = tmp_path / "bad.safetensors"
    save_file({"0/conv1.weight": torch.zeros(3, 3)}, str(bad))
    import hashlib

    doc = json.loads(path.read_text())
    doc["tuned"] = {
        "file": bad.name,
        "sha256": hashlib.sha256(bad.read_bytes()).hexdigest(),
        "configs": {"w2 qat-ste": 0},
    }
    path.write_text(json.dumps(doc))
    other = AppController()
    job = other.open_session_job(str(path))
    with pytest.raises(ValueError, match=r"tuned\.w2 qat-ste: conv1\.weight \(3, 3\)"):
        run_job(job)
    assert other.session.handle is None


def test_a_version_1_session_still_opens(tuned, tmp_path):
    from quantviz.io.session_file import load_session

    ctl, _ = tuned
    path, _ = _saved(ctl, tmp_path)
    doc = json.loads(path.read_text())
    doc["version"] = 1
    del doc["tuned"]
    old = tmp_path / "old.quantviz"
    old.write_text(json.dumps(doc))
    data = load_session(old)
    assert data.tuned == {} and "w2 qat-ste" in data.configs


def test_error_propagation_of_a_tuned_configuration_uses_its_weights(tuned):
    """The debug job's output SQNR: the fine-tuned float model against it with every weight
    fake-quantized by torch (W2 per channel), both computed here in plain torch."""
    import copy

    ctl, res = tuned
    s = ctl.session
    h, data = s.handle, s.data
    run_job(ctl.debug_job(ctl.qat_config))
    got = ctl.debug_result
    model = copy.deepcopy(h.module).eval()
    model.load_state_dict(res.weights, strict=False)
    with torch.no_grad():
        f = model(data.x).double()
        for fqn in s.fqns:
            p = model.get_submodule(h.layer(fqn).module_fqn).weight
            p.copy_(_torch_w2(p.detach()))
        q = model(data.x).double()
    ref = 10 * math.log10(float((f**2).sum()) / float(((q - f) ** 2).sum()))
    last = got.layers[-1]
    assert last.fqn == s.fqns[-1]
    assert last.cumulative.sqnr_db == pytest.approx(ref, abs=1e-2)
    # the same configuration on the loaded weights is another number
    run_job(ctl.debug_job("w2"))
    assert ctl.debug_result.layers[-1].cumulative.sqnr_db != pytest.approx(ref, abs=1e-2)


def test_a_weights_file_that_cannot_be_written_keeps_the_saved_session(tuned, tmp_path):
    """The weights are written first: when that fails the error names the weights file and
    the session file on disk is the previous save, untouched."""
    from quantviz.io.session_file import SessionFileError

    ctl, _ = tuned
    path, wfile = _saved(ctl, tmp_path)
    text = path.read_text()
    wfile.unlink()
    wfile.mkdir()  # the same weights give the same name: now a folder stands there
    with pytest.raises(SessionFileError, match="cannot write the fine-tuned weights") as e:
        ctl.save_session(str(path))
    assert str(wfile) in str(e.value)
    assert path.read_text() == text and ctl.session.modified is False
