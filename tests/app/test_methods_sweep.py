"""A sweep over bit-widths with one curve per method (issue 13): nearest, cle+bias_correction
... each its own series, every point equal to a separate evaluate() of the same config built
by hand; a method that does not apply is named and skipped; progress and cancel."""

from __future__ import annotations

import pytest
import torch

from quantviz.app import AppController, run_job
from quantviz.app.jobs import JobProgress
from quantviz.core.methods import Method, parse_method, parse_methods
from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec
from quantviz.eval import evaluate, run

W4T = QuantSpec(bits=4, granularity="per_tensor")


@pytest.fixture(scope="module")
def mobilenet():
    ctl = AppController()
    run_job(ctl.open_model_job("sample:digits_mobilenet"))
    return ctl


def test_parse_methods_names_the_bad_part():
    assert parse_method("nearest") == Method() == parse_method("none")
    m = parse_method("cle+bias_correction+gptq")
    assert [n for n, _ in m.transforms] == ["cle", "bias_correction"] and m.rounding == "gptq"
    assert m.label == "cle+bias_correction+gptq"
    assert parse_method("gptq").label == "gptq" and Method().label == "nearest"
    assert [m.label for m in parse_methods("nearest, none,gptq,")] == ["nearest", "gptq"]
    with pytest.raises(ValueError, match=r"--methods\[1\]: 'cel' in 'cel\+bias_correction'"):
        parse_methods("nearest,cel+bias_correction", "--methods")
    with pytest.raises(ValueError, match="two roundings"):
        parse_method("gptq+adaround")
    with pytest.raises(ValueError, match="cle appears twice"):
        parse_method("cle+cle")
    with pytest.raises(ValueError, match="no method"):
        parse_methods(" , ")


def test_one_curve_per_method_equal_to_separate_evaluations(mobilenet):
    ctl = mobilenet
    s = ctl.session
    n0 = len(s.results)
    seen: list[JobProgress] = []
    job = ctl.methods_sweep_job((3, 4), ["nearest", "cle+bias_correction", "hadamard"], spec=W4T)
    out = run_job(job, lambda e: seen.append(e) if isinstance(e, JobProgress) else None)
    series = job.meta["all_series"]
    assert series == [
        "uniform W3,4 sym t nearest",
        "uniform W3,4 sym t cle+bias_correction",
        "uniform W3,4 sym t hadamard",
    ]
    # hadamard has no linear pair to rotate in a CNN: named and skipped, not fatal
    assert list(job.meta["skipped"]) == ["hadamard"]
    assert "hadamard: nothing to rotate" in job.meta["skipped"]["hadamard"]
    assert [m.label for m, _ in out.runs] == ["nearest", "cle+bias_correction"]
    new = s.results[n0:]
    assert len(new) == 4
    by = {
        name: sorted(
            (e for e in new if e.series == name), key=lambda e: e.config.default.weight.bits
        )
        for name in series[:2]
    }
    assert all(len(v) == 2 for v in by.values())
    fracs = [p.fraction for p in seen]
    assert fracs == sorted(fracs) and fracs[-1] == pytest.approx(1.0)
    # an independent path: evaluate() each configuration built by hand, fresh caches
    handle, data = s.handle, s.data
    for name, transforms in ((series[0], ()), (series[1], ("cle", "bias_correction"))):
        for e, bits in zip(by[name], (3, 4), strict=True):
            cfg = ModelConfig(
                default=LayerConfig(weight=QuantSpec(bits=bits, granularity="per_tensor")),
                transforms=list(transforms),
            )
            assert e.config == cfg
            ref = run(evaluate(handle, data, cfg))
            assert e.value == pytest.approx(ref.value, abs=1e-12)
            assert e.model_bytes == ref.model_bytes
    w4 = {name: by[name][1].value for name in series[:2]}
    assert w4[series[1]] > w4[series[0]] + 0.3  # issue 13's numbers: CLE rescues W4 per tensor
    assert out.to_dict()["skipped"][0]["method"] == "hadamard"


def test_a_rounding_that_cannot_apply_is_skipped_and_cancel_keeps_the_float_model(mobilenet):
    ctl = mobilenet
    s = ctl.session
    before = {k: v.clone() for k, v in s.handle.module.state_dict().items()}
    pot = QuantSpec(bits=4, quantizer="log2", granularity="per_tensor")
    job = ctl.methods_sweep_job((4,), ["gptq", "nearest"], spec=pot)
    run_job(job)
    assert list(job.meta["skipped"]) == ["gptq"] and "uniform" in job.meta["skipped"]["gptq"]
    # cancel: stop consuming the generator halfway (as the GUI's Cancel does)
    n0 = len(s.results)
    job = ctl.methods_sweep_job((3, 4), ["nearest", "cle+bias_correction"], spec=W4T)
    gen = job.factory()
    for x in gen:
        job.on_item(x)
        if isinstance(x, JobProgress) and x.point == 2:  # the cle curve started
            break
    gen.close()
    assert [e.config.transforms for e in s.results[n0:]] == [(), ()]
    after = s.handle.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert ctl.model_lock.acquire(blocking=False)
    ctl.model_lock.release()


@pytest.mark.slow
def test_on_a_tiny_llama_cle_is_skipped_and_gptq_hadamard_are_curves(tmp_path):
    pytest.importorskip("transformers")
    import numpy as np
    from lm_models import random_tokens, tiny_llama
    from safetensors.torch import save_file

    model = tiny_llama()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.st")
    np.savez(tmp_path / "t.npz", input_ids=random_tokens(6, 16).numpy())
    ctl = AppController()
    run_job(
        ctl.open_model_job(f"{tmp_path / 'm.st'}::lm_models:tiny_llama", str(tmp_path / "t.npz"))
    )
    spec = QuantSpec(bits=4, granularity="per_channel")
    job = ctl.methods_sweep_job((3, 4), "nearest,cle,gptq,hadamard", spec=spec)
    out = run_job(job)
    assert (
        list(job.meta["skipped"]) == ["cle"]
        and "cle: no conv/linear pair" in (job.meta["skipped"]["cle"])
    )
    assert [m.label for m, _ in out.runs] == ["nearest", "gptq", "hadamard"]
    s = ctl.session
    for m, res in out.runs:  # each point equals a separate evaluate() of its config
        for p, bits in zip(res.points, (3, 4), strict=True):
            cfg = ModelConfig(
                default=LayerConfig(weight=spec.with_(bits=bits, rounding=m.rounding)),
                transforms=[n for n, _ in m.transforms],
            )
            ref = run(evaluate(s.handle, s.data, cfg))
            assert p.value == pytest.approx(ref.value, rel=1e-9), (m.label, bits)
    names = {e.series for e in s.results}
    assert {"uniform W3,4 sym ch nearest", "uniform W3,4 sym ch gptq"} <= names
