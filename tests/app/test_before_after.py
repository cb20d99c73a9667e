"""Before and after the remedies, without Qt: input activations captured under the
transforms, error propagation with and without them, sweeps with / without / both.

Numbers are checked against independent computations: plain torch forward hooks and
``scipy.stats.kurtosis`` for the activations, torch's own fake-quant for the quantized
model's output error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from quantviz.app import AppController, run_job
from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec
from quantviz.eval import run
from quantviz.eval.before_after import (
    has_remedies,
    plain_config,
    remedy_label,
    transformed_activations,
)
from quantviz.model.capture import ActivationStats

W4 = LayerConfig(weight=QuantSpec(bits=4))
W8A8 = LayerConfig(weight=QuantSpec(bits=8), activation=QuantSpec(bits=8))


def test_kurtosis_and_absmax_match_scipy_over_batches():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(4, 300, generator=g) * (1 + i) for i in range(3)]
    batches[1][0, 7] = -40.0  # an outlier: the tail kurtosis measures
    st = ActivationStats()
    for b in batches:
        st.update(b)
    allx = torch.cat([b.reshape(-1) for b in batches]).double().numpy()
    assert st.absmax == pytest.approx(40.0)
    assert st.kurtosis == pytest.approx(stats.kurtosis(allx, fisher=False), rel=1e-4)
    gauss = ActivationStats()
    gauss.update(torch.randn(200_000, generator=g))
    assert gauss.kurtosis == pytest.approx(3.0, abs=0.05)
    assert math.isnan(ActivationStats().kurtosis)


def test_plain_config_drops_transforms_and_rounding_only():
    gptq = QuantSpec(bits=3, granularity="per_group", group_size=32, rounding="gptq")
    cfg = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=4, rounding="adaround"), activation=None),
        overrides=(("fc*", LayerConfig(weight=gptq)),),
        transforms=["cle", "bias_correction"],
    )
    assert has_remedies(cfg) and remedy_label(cfg) == "cle+bias_correction + adaround+gptq"
    p = plain_config(cfg)
    assert p.transforms == () and not has_remedies(p) and remedy_label(p) == ""
    assert p.default.weight == QuantSpec(bits=4)
    assert p.resolve("fc1").weight == gptq.with_(rounding="nearest")
    assert p.resolve("fc1").weight.group_size == 32
    assert plain_config(p) == p
    assert not has_remedies(ModelConfig(default=W4))


def _llama_with_an_outlier():
    pytest.importorskip("transformers")
    from lm_models import random_tokens, tiny_llama

    m = tiny_llama()
    with torch.no_grad():  # one hidden channel of each MLP 30x larger: down_proj's outlier
        for layer in m.model.layers:
            layer.mlp.up_proj.weight[3].mul_(30)
    return m, random_tokens(8, 16)


def test_smoothquant_shrinks_down_proj_inputs_as_torch_hooks_see_them():
    from models import handle_of

    from quantviz.data.types import EvalData
    from quantviz.eval.transforms import transformed

    stats = pytest.importorskip("scipy.stats")
    m, x = _llama_with_an_outlier()
    h = handle_of(m, x[:1])
    snap = {k: v.clone() for k, v in m.state_dict().items()}
    data = EvalData("tokens", x, None, x, task="causal_lm")
    down = [f for f in h.fqns if f.endswith("mlp.down_proj")]
    mods = {f: m.get_submodule(f) for f in down}

    def grab() -> dict[str, torch.Tensor]:
        got: dict[str, list[torch.Tensor]] = {f: [] for f in down}
        hooks = [
            mod.register_forward_pre_hook(lambda _m, a, f=f: got[f].append(a[0].detach().clone()))
            for f, mod in mods.items()
        ]
        with torch.no_grad():
            m(x)
        for hk in hooks:
            hk.remove()
        return {f: torch.cat(v) for f, v in got.items()}

    before = grab()
    cfg = ModelConfig(default=W8A8, transforms=["smoothquant"])
    state = run(transformed_activations(h, data, cfg))
    assert state is not None and set(h.fqns) <= set(state.stats)
    with transformed(h, state):
        after = grab()
        w_after = {f: mods[f].weight.detach().clone() for f in down}
    assert all(torch.equal(v, snap[k]) for k, v in m.state_dict().items())
    for f in down:
        st = state.stats[f].input
        a, b = after[f].double(), before[f].double()
        assert st.count == a.numel()
        assert st.absmax == pytest.approx(float(a.abs().max()), rel=1e-6)
        assert st.kurtosis == pytest.approx(
            stats.kurtosis(a.reshape(-1).numpy(), fisher=False), rel=1e-3
        )
        # smoothquant: x' = x / s per input channel, W' = W * s (s from the weights)
        s = (w_after[f].double() / mods[f].weight.detach().double())[0]
        torch.testing.assert_close(a, b / s, rtol=1e-4, atol=1e-5)
        assert st.absmax < 0.5 * float(b.abs().max())  # the tail shrinks


@pytest.fixture(scope="module")
def mobilenet():
    ctl = AppController()
    run_job(ctl.open_model_job("sample:digits_mobilenet"))
    return ctl


def _torch_fq(w: torch.Tensor) -> torch.Tensor:
    """4-bit symmetric per-tensor min/max fake-quant by torch's observer."""
    obs = torch.ao.quantization.MinMaxObserver(
        dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-8, quant_max=7
    )
    obs(w)
    sc, zp = obs.calculate_qparams()
    return torch.fake_quantize_per_tensor_affine(w, float(sc), int(zp), -8, 7)


def _output_sqnr(h, x, state) -> float:
    """Output SQNR of the model with every layer's (transformed) weight fake-quantized by
    torch, vs the float model's output."""
    from quantviz.eval.transforms import transformed

    with torch.no_grad():
        y0 = h.module(x).double()
        with transformed(h, state):
            params = [h.weight(f) for f in h.fqns]
            old = [p.data for p in params]
            try:
                for p in params:
                    p.data = _torch_fq(p.data)
                yq = h.module(x).double()
            finally:
                for p, o in zip(params, old, strict=True):
                    p.data = o
    return 10 * math.log10(float((y0**2).sum()) / float(((yq - y0) ** 2).sum()))


def test_debug_job_runs_with_and_without_the_transforms(mobilenet):
    ctl = mobilenet
    s = ctl.session
    h = s.handle
    snap = {k: v.clone() for k, v in h.module.state_dict().items()}
    cfg = ModelConfig(default=W4, transforms=["cle", "bias_correction"])
    s.add_config("cle", cfg)
    s.make_current("cle")
    job = ctl.debug_job()
    assert "with and without" in job.label
    fractions = []
    run_job(job, lambda p: fractions.append(getattr(p, "fraction", None)))
    fr = [f for f in fractions if f is not None]
    assert fr == sorted(fr) and fr[-1] == pytest.approx(1.0)
    with_, without = ctl.debug_result, ctl.debug_plain
    assert with_.config == cfg and without.config == plain_config(cfg)
    assert [lay.fqn for lay in with_.layers] == [lay.fqn for lay in without.layers]
    x = s.data.x
    state = ctl.transform_state(compute=False)
    assert state is not None
    # independent: torch's fake-quant of the transformed / the original weights
    assert with_.output.sqnr_db == pytest.approx(_output_sqnr(h, x, state), abs=0.05)
    assert without.output.sqnr_db == pytest.approx(_output_sqnr(h, x, None), abs=0.05)
    assert with_.output.top1_agreement >= 0.9 > 0.3 > without.output.top1_agreement
    assert all(torch.equal(v, snap[k]) for k, v in h.module.state_dict().items())
    # a config without remedies: one run, no "without"
    s.make_current("default")
    run_job(ctl.debug_job())
    assert ctl.debug_plain is None


def test_sweep_with_without_and_both_are_separate_curves(mobilenet):
    ctl = mobilenet
    s = ctl.session
    s.add_config("cle sweep", ModelConfig(default=W4, transforms=["cle", "bias_correction"]))
    s.make_current("cle sweep")
    with pytest.raises(ValueError, match="remedies"):
        ctl.sweep_job((4,), remedies="sometimes")
    n0 = len(s.results)
    job = ctl.sweep_job((4, 8), remedies="both")
    run_job(job)
    new = s.results[n0:]
    series = job.meta["all_series"]
    assert len(series) == 2 and series[0].endswith("+ cle+bias_correction")
    assert series[1].endswith("without transforms")
    by = {name: [e for e in new if e.series == name] for name in series}
    assert all(len(v) == 2 for v in by.values())
    assert all(e.config.transforms for e in by[series[0]])
    assert not any(e.config.transforms for e in by[series[1]])
    w4_with = next(e for e in by[series[0]] if e.config.default.weight.bits == 4)
    w4_without = next(e for e in by[series[1]] if e.config.default.weight.bits == 4)
    assert w4_with.value >= 0.9 and w4_without.value < 0.3  # issue 13's numbers
    # "without" alone, and "both" on a config with no remedies is one curve
    n1 = len(s.results)
    run_job(ctl.sweep_job((4,), remedies="without"))
    assert [e.config.transforms for e in s.results[n1:]] == [()]
    s.make_current("default")
    job = ctl.sweep_job((4,), remedies="both")
    assert len(job.meta["all_series"]) == 1


def test_activation_view_has_the_input_after_the_transforms(tmp_path):
    pytest.importorskip("transformers")
    from lm_models import random_tokens, tiny_llama
    from safetensors.torch import save_file

    model, _ = _llama_with_an_outlier()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.st")
    np.savez(tmp_path / "t.npz", input_ids=random_tokens(6, 16).numpy())
    assert tiny_llama  # the factory the file names
    ctl = AppController()
    run_job(
        ctl.open_model_job(f"{tmp_path / 'm.st'}::lm_models:tiny_llama", str(tmp_path / "t.npz"))
    )
    s = ctl.session
    # the saved state dict has the outlier: the factory's random init is replaced
    run_job(ctl.calibration_job())
    s.add_config("w8a8", ModelConfig(default=W8A8))
    s.make_current("w8a8")
    f = "model.layers.1.mlp.down_proj"
    d = ctl.activation_view(f)
    assert d.state == "ok" and d.after is None and d.after_state == "none"
    s.add_config("sq", ModelConfig(default=W8A8, transforms=["smoothquant"]))
    s.make_current("sq")
    assert ctl.activation_view(f).after_state == "pending"
    run_job(ctl.transforms_job())
    d = ctl.activation_view(f)
    assert d.after_state == "ok" and d.after is not None
    assert d.after.label == "after smoothquant"
    assert d.after.levels is not None and len(d.after.levels) == 256 and d.levels is not None
    assert d.after.absmax < 0.5 * d.absmax and d.after.kurtosis < d.kurtosis
    lo, hi = d.after.clip
    assert max(-lo, hi) < max(-d.clip[0], d.clip[1])  # the grid after is finer
