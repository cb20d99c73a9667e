"""The Qt-free controller (quantviz.app): every recipe run without threads or Qt, on the
bundled sample and on real models written to disk; numbers checked against independent
computations (torch's fake-quant, a direct evaluation)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from quantviz.app import AppController, config_of, drive, run_job
from quantviz.core.defaults import DEFAULT_CONFIG, DEFAULT_WEIGHT
from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec
from quantviz.eval import PointDone, Progress


@pytest.fixture(scope="module")
def opened():
    ctl = AppController()
    run_job(ctl.open_model_job("sample:digits_cnn"))
    run_job(ctl.calibration_job())
    return ctl


@pytest.fixture
def ctl(opened):
    """A fresh controller on the sample (model and statistics shared with ``opened``)."""
    from quantviz.app import Opened

    c = AppController()
    s = opened.session
    c.adopt_model(Opened(s.handle, s.data_source, s.data))
    c.session.set_activation_stats(s.activation_stats)
    c.collecting_stats = False
    return c


def test_open_model_starts_at_the_one_default(opened):
    s = opened.session
    assert s.handle.name == "digits_cnn" and s.data is not None
    assert s.config == DEFAULT_CONFIG.__class__(
        default=DEFAULT_CONFIG.default, model="sample:digits_cnn"
    )
    assert s.config.default.weight == DEFAULT_WEIGHT  # what `quantviz eval` uses too
    assert s.selection == (s.fqns[0],)
    assert set(s.activation_stats) == set(s.fqns)


def test_open_model_job_yields_progress_and_leaves_session_until_done():
    c = AppController()
    job = c.open_model_job("sample:digits_mobilenet")
    items = []
    opened = drive(job.factory(), items.append)
    assert all(isinstance(i, Progress) for i in items) and items[-1].fraction == 1.0
    assert c.session.handle is None  # the recipe does not touch the session
    job.on_done(opened)
    assert c.session.handle.name == "digits_mobilenet"


def test_a_failed_open_leaves_the_previous_model(ctl, tmp_path):
    before = ctl.session.handle
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError):
        run_job(ctl.open_model_job(str(bad)))
    assert ctl.session.handle is before


def test_trust_is_a_type_not_a_message(ctl, tmp_path):
    from torch import nn

    from quantviz.model import TrustRequired

    path = tmp_path / "whole.pt"
    torch.save(nn.Sequential(nn.Linear(4, 2)), path)
    with pytest.raises(TrustRequired):
        run_job(ctl.open_model_job(str(path)))


def test_sqnr_table_against_torch_fake_quant(ctl):
    s = ctl.session
    todo = ctl.sqnr_todo()
    assert [f for f, _ in todo] == s.fqns
    job = ctl.sqnr_job(todo)
    changed = []
    ctl.sqnr.changed.connect(changed.append)
    run_job(job)
    assert ctl.sqnr_todo() == [] and changed
    # independent: torch's per-channel fake-quant with the observer's parameters
    w = s.weight("fc1")
    obs = torch.ao.quantization.PerChannelMinMaxObserver(
        ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric
    )
    obs(w)
    sc, zp = obs.calculate_qparams()
    fq = torch.fake_quantize_per_channel_affine(w, sc, zp.to(torch.int32), 0, -128, 127)
    ref = 10 * math.log10(float((w**2).sum()) / float(((fq - w) ** 2).sum()))
    assert ctl.layer_sqnr("fc1") == pytest.approx(ref, abs=1e-3)
    # another spec: unknown until computed; float is exact; a group that cannot divide: nan
    s.set_layer_spec(["fc1"], "weight", QuantSpec(bits=2))
    assert ctl.layer_sqnr("fc1") is None
    assert ctl.sqnr_under("fc1", None) == math.inf
    s.set_layer_spec(["conv1"], "weight", QuantSpec(granularity="per_group", group_size=5))
    run_job(ctl.sqnr_job(ctl.sqnr_todo()))
    assert ctl.layer_sqnr("fc1") < ref - 20
    assert math.isnan(ctl.layer_sqnr("conv1"))


def test_evaluate_a_named_configuration_without_making_it_current(ctl):
    from quantviz.eval import evaluate, run

    s = ctl.session
    s.save_as("w4")
    s.replace_config("w4", ModelConfig(default=LayerConfig(weight=QuantSpec(bits=4))))
    changes = []
    s.current_name_changed.connect(changes.append)
    s.config_changed.connect(changes.append)
    entry = run_job(ctl.evaluate_job("w4"))
    assert changes == [] and s.current_name == "default"
    assert entry.name == "w4" and entry.config == s.configs["w4"]
    # the same number as the engine called directly
    direct = run(evaluate(s.handle, s.data, s.configs["w4"]))
    assert entry.result.value == direct.value and entry.result.kl == pytest.approx(direct.kl)
    # SQNR measured by the evaluation lands in the one table
    assert ctl.sqnr_under("fc1", QuantSpec(bits=4)) is not None
    with pytest.raises(ValueError, match="no configuration named"):
        ctl.evaluate_job("nope")


def test_evaluation_and_calibration_never_overlap(ctl):
    """The model lock: a calibration waits while an evaluation has the weights swapped."""
    gen = ctl.evaluate_job().factory()
    next(gen)  # the evaluation holds the model
    assert ctl.model_lock.locked()
    gen.close()  # cancelled: the lock is released at once
    assert not ctl.model_lock.locked()


def test_sweeps_keep_every_run_as_its_own_curve(ctl):
    s = ctl.session
    first = ctl.sweep_job([2, 4])
    points = []
    run_job(first, lambda x: points.append(x) if isinstance(x, PointDone) else None)
    second = ctl.sweep_job([3, 8])
    run_job(second)
    again = ctl.sweep_job([2, 4])  # the same sweep again: its own curve too
    assert len(points) == 2
    assert first.meta["series"] == "uniform W2,4 sym ch"
    assert again.meta["series"] == "uniform W2,4 sym ch #2"
    series = s.series
    assert series == [first.meta["series"], second.meta["series"]]
    assert sorted(e.config.default.weight.bits for e in s.results) == [2, 3, 4, 8]
    s.clear_results(series[0])
    assert s.series == [series[1]]


def test_sensitivity_and_mixed_precision(ctl):
    s = ctl.session
    res = run_job(ctl.sensitivity_job([3]))
    assert set(s.sensitivity) == set(s.fqns)
    assert s.sensitivity["fc1"] == pytest.approx(res.baseline - res.layer("fc1").value[3])
    mp = run_job(ctl.mixed_precision_job(0.0, (2, 4, 8)))
    mixed = [e for e in s.results if e.series.startswith("mixed precision")]
    assert len(mixed) == len(mp.points) and all(e.name.startswith("mixed") for e in mixed)
    assert ctl.sens is mp.sensitivity


def test_activation_view_matches_the_evaluation_grid(ctl):
    from quantviz.eval.apply import fit_static

    s = ctl.session
    spec = QuantSpec(bits=4, symmetric=False)
    s.set_layer_spec(["fc1"], "activation", spec)
    d = ctl.activation_view("fc1")
    assert d.state == "ok" and d.levels is not None and len(d.levels) == 16
    fq = fit_static("fc1", spec, s.activation_stats["fc1"])
    assert d.clip == fq.clip_range
    # the clipped share counts the calibration values outside the range
    counts, edges = s.activation_stats["fc1"].input.histogram()
    lo, hi = d.clip
    outside = counts[(edges[:-1] < lo) | (edges[1:] > hi)].sum() / counts.sum()
    assert d.clipped_fraction == pytest.approx(outside)
    assert ctl.activation_view(None).state == "no-layer"


def test_torchscript_activations_are_refused_up_front(tmp_path):
    from quantviz.model.samples import build_sample

    _, module = build_sample("digits_cnn")
    path = tmp_path / "m.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
        torch.jit.save(torch.jit.script(module), str(path))
    (tmp_path / "m.ts.json").write_text('{"input_shape": [1, 1, 8, 8]}')
    c = AppController()
    run_job(c.open_model_job(str(path), "sample:digits"))
    assert not c.activations_supported(c.session.handle)
    assert c.calibration_job() is None and not c.collecting_stats
    d = c.activation_view("fc1")
    assert d.state == "unsupported" and "TorchScript" in d.message


def test_sessions_round_trip_and_refuse_what_does_not_fit(ctl, tmp_path):
    s = ctl.session
    s.save_as("mine")
    run_job(ctl.evaluate_job("mine"))
    assert s.modified
    path = tmp_path / "s.quantviz"
    ctl.save_session(str(path))
    assert not s.modified
    other = AppController()
    run_job(other.open_session_job(str(path)))
    o = other.session
    assert o.config_names == s.config_names and o.current_name == s.current_name
    assert [e.name for e in o.results] == ["mine"] and not o.modified
    assert o.results[0].result.value == s.results[0].result.value
    # a configuration naming a layer the model lacks: nothing changes
    import json

    doc = json.loads(path.read_text())
    doc["configs"]["mine"]["layers"] = {"no_such_layer": {"weight": None}}
    path.write_text(json.dumps(doc))
    before = (dict(o.configs), o.handle)
    with pytest.raises(ValueError, match="no_such_layer"):
        run_job(other.open_session_job(str(path)))
    assert (dict(o.configs), o.handle) == before


def test_config_of_reads_what_results_carry():
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=3)))

    class R:
        config = cfg

    assert config_of(R(), DEFAULT_CONFIG) is cfg
    assert config_of(object(), DEFAULT_CONFIG) is DEFAULT_CONFIG


def test_debug_and_proxies_jobs_run_headless():
    """The controller's debug and proxies jobs, run synchronously (as the CLI would)."""
    from quantviz.app import AppController, run_job

    ctl = AppController()
    run_job(ctl.open_model_job("sample:digits_cnn"))
    res = run_job(ctl.debug_job())
    assert ctl.debug_result is res and [lay.fqn for lay in res.layers] == ctl.session.fqns
    fractions: list[float] = []
    rep = run_job(
        ctl.proxies_job(3, ["mse", "output_sqnr"]), lambda p: fractions.append(p.fraction)
    )
    assert ctl.proxy_report is rep and set(rep.spearman) == {"mse", "output_sqnr"}
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {c[1].bits for c in rep.candidates} == {3}
    run_job(ctl.open_model_job("sample:digits_cnn"))  # a new model forgets both
    assert ctl.debug_result is None and ctl.proxy_report is None


def test_qat_job_keeps_the_fine_tuned_weights_as_a_configuration(ctl):
    """QAT (issue 13): a new configuration with the fine-tuned weights; evaluating it again
    gives what QAT reported; rename / delete carry the weights; the model is untouched."""
    from quantviz.eval.qat import QatOptions

    s = ctl.session
    w2 = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=2, granularity="per_channel")))
    s.add_config("w2", w2)
    before = {k: v.clone() for k, v in s.handle.module.state_dict().items()}
    res = run_job(ctl.qat_job("w2", QatOptions(epochs=2, method="lsq")))
    assert "w2 qat-lsq" in s.configs and s.configs["w2 qat-lsq"] == w2
    assert set(s.tuned) == {"w2 qat-lsq"}
    names = [(e.name, e.result.value) for e in s.results]
    assert names == [("w2", res.before.value), ("w2 qat-lsq", res.after.value)]
    assert res.after.value > res.before.value
    again = run_job(ctl.evaluate_job("w2 qat-lsq"))
    assert again.result.value == res.after.value
    plain = run_job(ctl.evaluate_job("w2"))  # the same config without the tuned weights
    assert plain.result.value == res.before.value
    for k, v in s.handle.module.state_dict().items():
        assert torch.equal(v, before[k]), k
    s.rename("w2 qat-lsq", "tuned")
    assert set(s.tuned) == {"tuned"}
    s.delete("tuned")
    assert s.tuned == {}
