"""Adopting a result of a fine-tuned configuration whose scheme was edited since (issue 13
follow-up): the configuration added for the result keeps the fine-tuned weights, so it is
what was measured; evaluated again it gives the result's number."""

from __future__ import annotations

import pytest
import torch

from quantviz.app import AppController, run_job
from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec

W2 = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=2, granularity="per_channel")))
W3 = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=3, granularity="per_channel")))


@pytest.fixture
def ctl():
    c = AppController()
    run_job(c.open_model_job("sample:digits_cnn"))
    c.collecting_stats = False
    return c


def test_adopting_a_tuned_result_keeps_its_weights(ctl):
    s = ctl.session
    g = torch.Generator().manual_seed(0)
    weights = {
        k: p.detach() + 0.2 * p.detach().abs().mean() * torch.randn(p.shape, generator=g)
        for k, p in s.handle.module.named_parameters()
    }
    s.add_config("w2 qat", W2)
    tw = s.set_tuned("w2 qat", weights)
    measured = run_job(ctl.evaluate_job("w2 qat"))
    s.add_config("w2 plain", W2)
    plain = run_job(ctl.evaluate_job("w2 plain"))
    assert measured.value != plain.value  # the weights matter to the number
    # the user edits the tuned configuration's scheme, then clicks its old result
    s.replace_config("w2 qat", W3)
    name = s.adopt(measured)
    assert name == "w2 qat (2)" and s.current_name == name
    assert s.config == W2
    assert s.tuned[name] is tw and s.weights_tag(name) == tw.tag
    assert s.adopted_weights_of(name) == "w2 qat"
    assert s.tuned["w2 qat"] is tw  # the edited one keeps them too
    for k, t in weights.items():
        assert torch.equal(s.tuned[name][k], t)
    again = run_job(ctl.evaluate_job(name))
    assert again.result.value == pytest.approx(measured.result.value, abs=1e-9)
    # a result of a configuration on the loaded weights adopts without weights, as before
    s.replace_config("w2 plain", W3)
    other = s.adopt(plain)
    assert other == "w2 plain (2)" and other not in s.tuned
    assert s.adopted_weights_of(other) is None
