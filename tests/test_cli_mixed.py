"""``quantviz mixed``: the document's optimum checked by brute force from its own candidates."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict

import pytest
import torch

from quantviz.cli import main
from quantviz.core import QuantSpec
from quantviz.model import load_model

CHOICES = "int2:pc,int4:g32,int8:pc,nf4,mxfp4,nvfp4,float"


def _doc(capsys, *args):
    assert main(["mixed", "--model", "sample:digits_cnn", "--no-progress", "--json", *args]) == 0
    out, _ = capsys.readouterr()
    return json.loads(out)


def _brute_force(doc, key="bytes"):
    by_layer = defaultdict(list)
    for c in doc["candidates"]:
        by_layer[c["layer"]].append(c)
    layers = list(by_layer)
    bound = doc["budget_bytes"] - doc["fixed_bytes"] if key == "bytes" else doc["budget_bops"]
    best = None
    for combo in itertools.product(*(by_layer[f] for f in layers)):
        if sum(c[key] for c in combo) <= bound:
            cost = sum(c["cost"] for c in combo)
            best = cost if best is None else min(best, cost)
    return layers, best


@pytest.mark.parametrize("budget", ["0.2", "4.5bpw", "30kB"])
def test_the_document_is_optimal_over_its_candidates(capsys, budget):
    doc = _doc(capsys, "--choices", CHOICES, "--budget", budget)
    layers, best = _brute_force(doc)
    assert set(doc["assignment"]) == set(layers) == {"conv1", "conv2", "fc1", "fc2"}
    chosen = [
        next(c for c in doc["candidates"] if c["layer"] == f and c["scheme"] == s)
        for f, s in doc["assignment"].items()
    ]
    assert doc["objective"] == pytest.approx(sum(c["cost"] for c in chosen))
    assert doc["model_bytes"] == pytest.approx(doc["fixed_bytes"] + sum(c["bytes"] for c in chosen))
    assert doc["model_bytes"] <= doc["budget_bytes"]
    assert doc["objective"] == pytest.approx(best)


def test_budget_kinds_and_sizes(capsys):
    doc = _doc(capsys, "--choices", CHOICES, "--budget", "0.2")
    assert doc["budget_bytes"] == pytest.approx(0.2 * doc["float_bytes"])
    # the float model: every parameter and buffer at float32
    h = load_model("sample:digits_cnn")
    floats = sum(p.numel() * 4 for p in h.module.parameters())
    floats += sum(b.numel() * b.element_size() for b in h.module.buffers())
    assert doc["float_bytes"] == floats
    weights = sum(h.weight(f).numel() for f in h.fqns)
    assert doc["fixed_bytes"] == floats - 4 * weights
    assert doc["weights"] == weights
    # a candidate's bytes are its weight's storage (fc1: 64x512 weights)
    fc1 = {c["scheme"]: c for c in doc["candidates"] if c["layer"] == "fc1"}
    n = h.weight("fc1").numel()
    assert fc1["float"]["bytes"] == 4 * n and fc1["float"]["cost"] == 0.0
    assert fc1["mxfp4"]["bytes"] == n * 4.25 / 8
    assert fc1["nvfp4"]["bytes"] == (n * 4.5 + 32) / 8
    # mse: the squared error of the weight, computed here with plain torch
    w = h.weight("fc1").detach()
    s = w.abs().amax(dim=1, keepdim=True) / 127.5  # torch.ao: amax / ((qmax - qmin) / 2)
    q = torch.clamp(torch.round(w / s), -128, 127) * s
    assert fc1["int8:pc"]["cost"] == pytest.approx(float(((q - w) ** 2).sum()), rel=1e-4)
    doc = _doc(capsys, "--choices", CHOICES, "--budget", "4bpw")
    assert doc["budget_bytes"] == pytest.approx(doc["fixed_bytes"] + 4 * doc["weights"] / 8)
    assert doc["bits_per_weight"] <= 4


def test_bops_budget_and_greedy(capsys):
    doc = _doc(capsys, "--choices", "int4:pc,int8:pc,float", "--budget", "0.5GBOPs")
    _, best = _brute_force(doc, "bops")
    assert doc["budget_bytes"] is None and doc["budget_bops"] == 0.5e9
    assert doc["bops"] <= 0.5e9 and doc["objective"] == pytest.approx(best)
    greedy = _doc(capsys, "--choices", CHOICES, "--budget", "0.2", "--solver", "greedy")
    exact = _doc(capsys, "--choices", CHOICES, "--budget", "0.2")
    assert greedy["solver"] == "greedy" and greedy["model_bytes"] <= greedy["budget_bytes"]
    assert greedy["objective"] >= exact["objective"] - 1e-12


def test_evaluate_and_kl_proxy(capsys):
    doc = _doc(
        capsys, "--choices", "int4:pc,int8:pc", "--budget", "6bpw", "--proxy", "kl", "--evaluate"
    )
    assert doc["proxy"] == "kl" and doc["data"]
    ev = doc["evaluation"]
    assert ev["model_bytes"] == pytest.approx(doc["model_bytes"])
    layers = {lay["fqn"]: lay["scheme"] for lay in ev["layers"]}
    for f, s in doc["assignment"].items():
        want = QuantSpec(bits=int(s[3]), granularity="per_channel").short()
        assert layers[f].startswith(f"W{want}")


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--budget", "lots"], "--budget: expected a fraction"),
        (["--budget", "0.2", "--choices", "int4:g7"], "--choices: "),
        (["--budget", "100B"], "--budget: 100B is below the smallest model"),
    ],
)
def test_errors_are_one_line_naming_the_flag(capsys, args, msg):
    assert main(["mixed", "--model", "sample:digits_cnn", "--no-progress", *args]) == 2
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quantviz: error: ") and msg in lines[0]


def test_a_proxy_mapped_to_none_says_it_is_not_available(capsys, monkeypatch):
    from quantviz.eval import mixed_exact

    monkeypatch.setitem(mixed_exact.PROXIES, "hessian", None)
    assert main(["mixed", "-m", "sample:digits_cnn", "--budget", "0.2", "--proxy", "hessian"]) == 2
    _, err = capsys.readouterr()
    assert "--proxy: hessian is not available yet" in err and len(err.strip().splitlines()) == 1


def test_fisher_proxy_costs_and_optimum(capsys):
    doc = _doc(capsys, "--choices", "int2:pc,int8:pc,float", "--budget", "0.2", "--proxy", "fisher")
    assert doc["proxy"] == "fisher"
    costs = {(c["layer"], c["scheme"]): c["cost"] for c in doc["candidates"]}
    assert all(v >= 0 for v in costs.values())
    for f in doc["assignment"]:
        assert costs[(f, "float")] == 0.0
        assert costs[(f, "int2:pc")] > costs[(f, "int8:pc")]  # more error, more cost
    _, best = _brute_force(doc)
    assert doc["objective"] == pytest.approx(best)
