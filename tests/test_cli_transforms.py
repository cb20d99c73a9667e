"""``--transforms`` on the command line: eval, sweep, export, and bad input (exit 2)."""

from __future__ import annotations

import json

from quantviz.cli import main

W4 = {"format": "quantviz-config", "version": 3, "default": {"weight": {"bits": 4}}}


def _doc(capsys):
    out = capsys.readouterr().out
    return json.loads(out)


def test_eval_with_transforms_lifts_w4_per_tensor(tmp_path, capsys):
    cfg = tmp_path / "w4.json"
    cfg.write_text(json.dumps(W4))
    args = ["eval", "-m", "sample:digits_mobilenet", "-c", str(cfg), "--json", "--no-progress"]
    assert main(args) == 0
    plain = _doc(capsys)
    assert main([*args, "--transforms", "cle,bias_correction"]) == 0
    fixed = _doc(capsys)
    assert plain["value"] < 0.3 <= 0.9 <= fixed["value"]
    assert fixed["name"].endswith("+ cle+bias_correction")
    assert "transform" in fixed["timings"]
    assert any(n.startswith("cle: equalized") for n in fixed["layers"][0]["notes"])
    # the same through the config file, and --transforms none clears it
    cfg.write_text(json.dumps({**W4, "transforms": ["cle", "bias_correction"]}))
    assert main(["eval", "-m", "sample:digits_mobilenet", "-c", str(cfg), "--json"]) == 0
    assert _doc(capsys)["value"] == fixed["value"]
    assert main([*args, "--transforms", "none"]) == 0
    assert _doc(capsys)["value"] == plain["value"]


def test_sweep_names_its_points_with_the_transforms(capsys):
    args = ["sweep", "-m", "sample:digits_cnn", "--bits", "3,4", "--json", "--no-progress"]
    assert main([*args, "--transforms", "smoothquant:alpha=0.8"]) == 0
    doc = _doc(capsys)
    assert [p["name"].split(" + ")[-1] for p in doc["points"]] == ["smoothquant(alpha=0.8)"] * 2
    # the label's own form reads back as the same transform, with the same results
    assert main([*args, "--transforms", "smoothquant(alpha=0.8)"]) == 0
    again = _doc(capsys)
    assert [p["name"] for p in again["points"]] == [p["name"] for p in doc["points"]]
    assert [p["value"] for p in again["points"]] == [p["value"] for p in doc["points"]]


def test_export_safetensors_with_transforms_and_gptq(tmp_path, capsys):
    cfg = tmp_path / "g.json"
    cfg.write_text(json.dumps({**W4, "default": {"weight": {"bits": 4, "rounding": "gptq"}}}))
    out = tmp_path / "m.safetensors"
    args = ["export", "-m", "sample:digits_cnn", "-c", str(cfg), "-f", "safetensors"]
    assert main([*args, "-o", str(out), "--transforms", "cle", "--json", "--no-progress"]) == 0
    doc = _doc(capsys)
    assert doc["unsupported"] == [] and doc["transforms"] == ["cle"]
    from quantviz.io.exporters.safetensors_fmt import read_manifest

    assert read_manifest(out)["config"]["transforms"] == ["cle"]


def test_bad_transforms_are_one_line_usage_errors(capsys):
    for bad, words in (
        ("cle,foo", "transforms[1]: must be one of"),
        ("smoothquant:alpha=2", "transforms.smoothquant.alpha: must be in"),
        ("smoothquant(alpha=2)", "smoothquant.alpha: must be in"),
        ("smoothquant(alpha=0.8)+gptq", "must be one transform"),
        ("smoothquant(alpha=0.8", "without its ')'"),
        ("smoothquant:alpha", "must be NAME=NUMBER"),
        ("cle,,", "empty transform name"),
    ):
        assert main(["eval", "-m", "sample:digits_cnn", "--transforms", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("quantviz: error: ") and words in err[0]
