"""The exact mixed-precision jobs of the controller, run without threads: the cost table
(progress, cancel), its exact front, and one evaluated point."""

from __future__ import annotations

import itertools

import pytest
import torch

from quantviz.app import AppController, run_job
from quantviz.app.jobs import JobProgress
from quantviz.core import quantize
from quantviz.core.mixed_spec import Budget, parse_choices
from quantviz.eval import evaluate, run

CHOICES = "int2:pc,int4:g32,int8:pc,nf4,mxfp4,nvfp4,float"


@pytest.fixture(scope="module")
def ctl():
    c = AppController()
    run_job(c.open_model_job("sample:digits_cnn"))
    return c


def test_cost_table_job_progress_costs_and_front(ctl):
    events = []
    table, front = run_job(ctl.mixed_cost_job(CHOICES, "mse"), events.append)
    assert ctl.mixed_table is table and ctl.mixed_front is front
    fr = [e.fraction for e in events if isinstance(e, JobProgress)]
    assert fr and fr == sorted(fr) and fr[-1] == pytest.approx(1.0)
    h = ctl.session.handle
    schemes = {s.label: s.spec for s in parse_choices(CHOICES)}
    for c in table.candidates:  # the weight's squared error, quantized here directly
        w = h.weight(c.fqn)
        want = 0.0 if c.spec is None else float(((quantize(w, c.spec).dequantized - w) ** 2).sum())
        assert table.cost(c) == pytest.approx(want, rel=1e-5, abs=1e-12)
        assert c.spec == schemes[c.label]
    # conv1's rows (1x3x3 = 9 values) hold no whole block of 16 or 32, nor a group of 32
    assert {c.label for c in table.layer_candidates("conv1")} == {
        "int2:pc",
        "int8:pc",
        "nf4:pc",
        "float",
    }
    # the exact front: every combination is dominated by or equal to a front point
    per = [table.layer_candidates(f) for f in table.fqns]
    pts = [
        (sum(c.bytes for c in combo), sum(table.cost(c) for c in combo))
        for combo in itertools.product(*per)
    ]
    for r, cst in pts:
        assert any(p.resource <= r + 1e-9 and p.cost <= cst + 1e-12 for p in front)
    for p in front:
        assert any(abs(p.resource - r) < 1e-9 and abs(p.cost - cst) < 1e-12 for r, cst in pts)


def test_cost_table_job_stops_when_closed(ctl):
    h = ctl.session.handle
    before = {f: h.weight(f).detach().clone() for f in h.fqns}
    gen = ctl.mixed_cost_job(CHOICES, "kl").factory()
    seen = 0
    for ev in gen:  # stop in the middle of a candidate's quantized forward pass
        if getattr(ev, "stage", "") == "forward" and getattr(ev, "point", 0) >= 2:
            break
        seen += 1
    gen.close()  # the model is float again and the lock free
    assert seen > 0 and not ctl.model_lock.locked()
    assert all(torch.equal(h.weight(f), before[f]) for f in h.fqns)


def test_mixed_point_job_adds_a_point_of_its_curve(ctl):
    table, _ = run_job(ctl.mixed_cost_job(CHOICES, "mse"))
    sol = table.solve(Budget("bpw", 4.5, "4.5bpw"))
    entry = run_job(ctl.mixed_point_job(sol.config, "mixed 4.5"))
    assert entry.series == "exact mixed" and entry.name == "mixed 4.5"
    r = entry.result
    assert r.model_bytes == pytest.approx(sol.model_bytes)
    direct = run(evaluate(ctl.session.handle, ctl.session.data, sol.config))
    assert r.value == direct.value and r.kl == pytest.approx(direct.kl)


def test_an_unavailable_proxy_refuses_before_the_job(ctl, monkeypatch):
    from quantviz.eval import mixed_exact

    monkeypatch.setitem(mixed_exact.PROXIES, "fisher", None)
    with pytest.raises(ValueError, match="--proxy: fisher is not available yet"):
        ctl.mixed_cost_job(CHOICES, "fisher")
