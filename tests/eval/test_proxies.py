"""Sensitivity proxies: the fragile layer first; Hutchinson vs the exact Hessian trace."""

from __future__ import annotations

import json
import math

import pytest
import torch
from models import handle_of
from test_debug import data_of, fragile_mlp
from torch import nn
from torch.func import functional_call

from quantviz.core import QuantSpec
from quantviz.data.datasets import EvalData
from quantviz.eval import run
from quantviz.eval.proxies import PROXIES, hutchinson_traces, rank_proxies


def test_every_proxy_ranks_the_fragile_layer_first():
    h = handle_of(fragile_mlp(), torch.zeros(1, 16))
    d = data_of(64)
    cands = [(f, QuantSpec(bits=4)) for f in h.fqns]
    events = []
    rep = run(rank_proxies(h, d, cands), events.append)
    assert set(rep.values) == set(PROXIES) == {"mse", "output_sqnr", "kl", "fisher", "hessian"}
    assert rep.by_drop()[0][0] == "2"  # the truth: top-1 agreement falls most for layer 2
    for name in PROXIES:
        assert rep.ranking(name)[0][0] == "2", name
        assert all(v >= 0 for v in rep.values[name].values())
    # progress is monotone over the whole run (truth, then each proxy)
    fr = [e.fraction for e in events]
    assert fr == sorted(fr) and fr[-1] == 1.0
    doc = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert set(doc["spearman"]) == set(PROXIES)
    assert doc["layers"][0]["ranks"]["mse"] >= 1
    # Spearman computed independently with scipy on the reported numbers
    from scipy.stats import spearmanr

    drops = [lay["drop"] for lay in doc["layers"]]
    for name in PROXIES:
        vals = [lay["proxies"][name] for lay in doc["layers"]]
        rho = spearmanr(vals, drops).statistic
        assert doc["spearman"][name] == pytest.approx(rho) or math.isnan(rho)


def test_proxy_registry_signature_and_cancel():
    h = handle_of(fragile_mlp(), torch.zeros(1, 16))
    d = data_of(32)
    cands = [("0", QuantSpec(bits=4)), ("0", QuantSpec(bits=8)), ("2", QuantSpec(bits=4))]
    for name, fn in PROXIES.items():
        out = run(fn(h, d, cands))
        assert set(out) == set(cands), name
        assert out[("0", QuantSpec(bits=8))] < out[("0", QuantSpec(bits=4))], name
    m = h.module
    before = [p.requires_grad for p in m.parameters()]
    gen = PROXIES["hessian"](h, d, cands)
    next(gen)
    gen.close()
    assert [p.requires_grad for p in m.parameters()] == before
    with pytest.raises(ValueError, match="not a layer"):
        run(PROXIES["mse"](h, d, [("nope", QuantSpec())]))


def _tiny(labels: bool):
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 5)).eval()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(24, 4, generator=g)
    y = torch.randint(0, 5, (24,), generator=g) if labels else None
    return m, EvalData("tiny", x, y, x[:8])


@pytest.mark.parametrize("labels", [True, False])
def test_hutchinson_matches_the_exact_hessian_trace(labels):
    m, d = _tiny(labels)
    h = handle_of(m, torch.zeros(1, 4))
    params = dict(m.named_parameters())
    ref_logits = m(d.x).detach()

    def loss_of(w: torch.Tensor) -> torch.Tensor:
        out = functional_call(m, {**params, "0.weight": w}, (d.x,))
        if labels:
            return nn.functional.cross_entropy(out, d.y)
        p = torch.log_softmax(ref_logits, -1)
        return (p.exp() * (p - torch.log_softmax(out, -1))).sum(-1).mean()

    H = torch.autograd.functional.hessian(loss_of, params["0.weight"].detach())
    exact = float(H.reshape(12, 12).diagonal().sum())
    est = run(hutchinson_traces(h, d, ["0"], probes=400, batch_size=10))["0"]
    # Hutchinson's variance per probe is 2 * sum of the squared off-diagonal entries
    Hm = H.reshape(12, 12)
    sd = math.sqrt(2 * float((Hm**2).sum() - (Hm.diagonal() ** 2).sum()) / 400)
    assert abs(est.trace - exact) < 4 * sd + 1e-6
    assert est.stderr == pytest.approx(sd, rel=0.5)
    assert est.n == 12 and est.probes == 400
