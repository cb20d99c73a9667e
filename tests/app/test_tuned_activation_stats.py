"""The activation statistics of a fine-tuned configuration are captured with its own
weights in the model (issue 13 follow-up): the panel's numbers match plain torch hooks on a
copy of the model holding the fine-tuned weights, and a static-activation evaluation of the
configuration uses the same statistics."""

from __future__ import annotations

import copy

import pytest
import torch

from quantviz.app import AppController, run_job
from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec

W4A8 = ModelConfig(
    default=LayerConfig(
        weight=QuantSpec(bits=4, granularity="per_channel"), activation=QuantSpec(bits=8)
    )
)


@pytest.fixture
def ctl():
    c = AppController()
    run_job(c.open_model_job("sample:digits_cnn"))
    run_job(c.calibration_job())  # the loaded weights' statistics, as the window does
    return c


def _tuned_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        k: p.detach() * 1.5 + 0.3 * p.detach().abs().mean() * torch.randn(p.shape, generator=g)
        for k, p in module.named_parameters()
    }


def _independent_inputs(module, weights, x, fqns) -> dict[str, tuple[float, float, int]]:
    """Plain torch: a copy of the model with ``weights``; each layer's input min/max/count."""
    m = copy.deepcopy(module).eval()
    m.load_state_dict(weights, strict=False)
    seen: dict[str, list[torch.Tensor]] = {f: [] for f in fqns}
    hooks = [
        m.get_submodule(f).register_forward_pre_hook(
            lambda _m, a, f=f: seen[f].append(a[0].detach().flatten())
        )
        for f in fqns
    ]
    with torch.no_grad():
        m(x)
    for h in hooks:
        h.remove()
    out = {}
    for f, parts in seen.items():
        v = torch.cat(parts)
        out[f] = (float(v.min()), float(v.max()), int(v.numel()))
    return out


def test_panel_statistics_are_of_the_fine_tuned_weights(ctl):
    s = ctl.session
    s.add_config("w4a8 qat", W4A8)
    weights = _tuned_weights(s.handle.module)
    tw = s.set_tuned("w4a8 qat", weights)
    s.make_current("w4a8 qat")
    fqns = s.fqns
    job = ctl.tuned_calibration_job()
    assert job is not None and tw.tag in ctl.collecting_tuned
    assert ctl.activation_view(fqns[-1]).state == "collecting"
    assert ctl.tuned_calibration_job() is None  # one capture per weight set
    run_job(job)
    assert tw.tag in ctl.tuned_stats and not ctl.collecting_tuned
    assert ctl.tuned_calibration_job() is None  # known already
    x = s.data.calib_x
    want = _independent_inputs(s.handle.module, weights, x, fqns)
    loaded = _independent_inputs(s.handle.module, dict(s.handle.module.named_parameters()), x, fqns)
    for f in fqns:
        d = ctl.activation_view(f)
        assert d.state == "ok", f
        lo, hi, n = want[f]
        assert d.count == n and d.vmin == pytest.approx(lo, rel=1e-5, abs=1e-6)
        assert d.vmax == pytest.approx(hi, rel=1e-5, abs=1e-6), f
    # past the first layer the inputs differ from the loaded weights' (what was shown before)
    assert want[fqns[-1]][1] != pytest.approx(loaded[fqns[-1]][1], rel=1e-3)
    s.make_current("default")
    lo, hi, _ = loaded[fqns[-1]]
    assert ctl.activation_view(fqns[-1]).vmax == pytest.approx(hi, rel=1e-5, abs=1e-6)
    # the static ranges an evaluation of the configuration fits are those statistics: the
    # same number whether they come from the panel's capture or from the run itself
    with_panel = run_job(ctl.evaluate_job("w4a8 qat")).result.value
    ctl.tuned_stats.clear()
    in_run = run_job(ctl.evaluate_job("w4a8 qat")).result.value
    assert with_panel == pytest.approx(in_run, abs=1e-12)


def test_nothing_to_capture_for_a_configuration_on_the_loaded_weights(ctl):
    assert ctl.tuned_calibration_job() is None
    assert ctl.stats_of() is ctl.session.activation_stats
