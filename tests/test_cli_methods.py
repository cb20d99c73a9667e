"""``quantviz sweep --methods``: a table (in --json a series) per method, the methods that do
not apply named and skipped, bad input as one-line usage errors (exit 2)."""

from __future__ import annotations

import json

import pytest

from quantviz.cli import main

W4T = {
    "format": "quantviz-config",
    "version": 3,
    "default": {"weight": {"bits": 4, "granularity": "per_tensor"}},
}


@pytest.mark.slow
def test_sweep_methods_json_has_a_series_per_method_equal_to_eval(tmp_path, capsys):
    cfg = tmp_path / "w4t.json"
    cfg.write_text(json.dumps(W4T))
    args = ["sweep", "-m", "sample:digits_cnn", "-c", str(cfg), "--bits", "3,4"]
    assert main([*args, "--methods", "nearest,cle+bias_correction,hadamard", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "methods"
    assert [s["method"] for s in doc["series"]] == ["nearest", "cle+bias_correction"]
    assert [s["method"] for s in doc["skipped"]] == ["hadamard"]
    assert "nothing to rotate" in doc["skipped"][0]["reason"]
    cle = doc["series"][1]
    assert [p["name"] for p in cle["points"]] == [
        "uniform W3 sym t + cle+bias_correction",
        "uniform W4 sym t + cle+bias_correction",
    ]
    # the same W4 points from `quantviz eval` with the configuration written out by hand
    for transforms, series in (([], doc["series"][0]), (["cle", "bias_correction"], cle)):
        cfg.write_text(json.dumps({**W4T, "transforms": transforms}))
        assert main(["eval", "-m", "sample:digits_cnn", "-c", str(cfg), "--json"]) == 0
        one = json.loads(capsys.readouterr().out)
        assert one["value"] == series["points"][1]["value"]
    # the text: a table per method, the skipped one named with the reason
    assert main([*args, "--methods", "nearest,hadamard", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nearest: uniform sweep of sample:digits_cnn: accuracy, float")
    assert "uniform W3 sym t " in out and out.rstrip().splitlines()[-1].startswith(
        "hadamard: skipped: "
    )


def test_bad_methods_are_one_line_usage_errors(capsys):
    for extra, words in (
        (["--methods", "nearest,cel"], "--methods[1]: 'cel' in 'cel' is neither a rounding"),
        (["--methods", "gptq+adaround"], "names two roundings"),
        (["--methods", "gptq", "--transforms", "cle"], "--methods: each method names"),
        (["--methods", "hadamard"], "--methods: no method applies to sample:digits_cnn"),
    ):
        args = ["sweep", "-m", "sample:digits_cnn", "--bits", "4", "--no-progress", *extra]
        assert main(args) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("quantviz: error: ") and words in err[0], err


W4A8 = {
    **W4T,
    "default": {"weight": {"bits": 4, "granularity": "per_tensor"}, "activation": {"bits": 8}},
}


def test_sweep_methods_with_parameters_use_them_and_say_so(tmp_path, capsys):
    """``--methods "nearest,smoothquant(alpha=0.8)"``: the series says alpha 0.8 and its W3
    point equals ``quantviz eval`` of a config file with that transform entry, not the one
    with alpha 0.5; a config's own alpha is what a bare ``smoothquant`` sweeps."""
    cfg = tmp_path / "w4a8.json"
    cfg.write_text(json.dumps(W4A8))
    args = ["sweep", "-m", "sample:digits_cnn", "--bits", "3", "--json", "--no-progress"]
    assert main([*args, "-c", str(cfg), "--methods", "nearest,smoothquant(alpha=0.8)"]) == 0
    doc = json.loads(capsys.readouterr().out)
    sq = doc["series"][1]
    assert sq["method"] == "smoothquant(alpha=0.8)" and sq["rounding"] == "nearest"
    assert sq["transforms"] == [{"smoothquant": {"alpha": 0.8}}]
    assert doc["series"][0]["transforms"] == [] and doc["series"][0]["method"] == "nearest"
    assert sq["points"][0]["name"] == "uniform W3 sym t A8 sym t + smoothquant(alpha=0.8)"
    evals = {}
    for alpha in (0.8, 0.5):
        one = tmp_path / f"sq{alpha}.json"
        one.write_text(json.dumps({**W4A8, "transforms": [{"smoothquant": {"alpha": alpha}}]}))
        w3 = json.loads(one.read_text())
        w3["default"]["weight"]["bits"] = 3
        one.write_text(json.dumps(w3))
        assert main(["eval", "-m", "sample:digits_cnn", "-c", str(one), "--json"]) == 0
        evals[alpha] = json.loads(capsys.readouterr().out)["value"]
    assert sq["points"][0]["value"] == evals[0.8] != evals[0.5]
    # the config has smoothquant at alpha 0.8: a bare smoothquant method keeps it
    cfg.write_text(json.dumps({**W4A8, "transforms": [{"smoothquant": {"alpha": 0.8}}]}))
    assert main([*args, "-c", str(cfg), "--methods", "smoothquant,smoothquant(alpha=0.5)"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["method"] for s in doc["series"]] == ["smoothquant(alpha=0.8)", "smoothquant"]
    assert [s["transforms"][0]["smoothquant"]["alpha"] for s in doc["series"]] == [0.8, 0.5]
    assert doc["series"][0]["points"][0]["value"] == evals[0.8]
    assert doc["series"][1]["points"][0]["value"] == evals[0.5]


def test_bad_method_parameters_are_one_line_usage_errors(capsys):
    for text, words in (
        (
            "nearest,smoothquant(alpha=2)",
            "--methods[1]: 'smoothquant(alpha=2)': smoothquant.alpha: must be in [0.0, 1.0], got 2",
        ),
        ("hadamard(seed=1,foo=2)", "hadamard.seed: unknown parameter (known: none)"),
        ("smoothquant(alpha=0.8", "a '(' without its ')'"),
    ):
        args = [
            "sweep",
            "-m",
            "sample:digits_cnn",
            "--bits",
            "4",
            "--no-progress",
            "--methods",
            text,
        ]
        assert main(args) == 2, text
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("quantviz: error: ") and words in err[0], err
