"""``quantviz debug`` and ``quantviz proxies`` in-process (main([...]) with capsys)."""

from __future__ import annotations

import json

import pytest

from quantviz.cli import main


def test_debug_json_document(capsys, tmp_path):
    cfg = tmp_path / "w4t.yaml"
    cfg.write_text(
        "format: quantviz-config\nversion: 2\n"
        "default:\n  weight: {bits: 4, granularity: per_tensor}\n"
    )
    me = tmp_path / "node_data.json"
    argv = ["debug", "--model", "sample:digits_mobilenet", "--config", str(cfg), "--json"]
    assert main([*argv, "--no-progress", "--export-model-explorer", str(me)]) == 0
    out, _ = capsys.readouterr()
    doc = json.loads(out)
    fqns = [lay["fqn"] for lay in doc["layers"]]
    assert fqns == ["stem", "dw1", "pw1", "dw2", "pw2", "dw3", "pw3", "fc"]  # execution order
    for lay in doc["layers"]:
        assert set(lay["isolated"]) == set(lay["cumulative"]) == {"mse", "sqnr_db", "cosine"}
        assert lay["flagged"] == (lay["jump"] or lay["worst_isolated"])
        assert lay["scheme"].startswith("W4 sym t")
    assert {"kl", "mse", "sqnr_db", "cosine", "top1_agreement"} <= set(doc["output"])
    # the depthwise layers (100x channel spreads after BatchNorm folding) are where it jumps
    jumps = {lay["fqn"] for lay in doc["layers"] if lay["jump"]}
    assert "dw3" in jumps and jumps <= {"dw1", "dw2", "dw3"}
    assert doc["layers"][-1]["cumulative"]["sqnr_db"] == pytest.approx(doc["output"]["sqnr_db"])
    node = json.loads(me.read_text())
    assert set(node["graph"]["results"]) >= set(fqns)
    assert node["graph"]["results"]["dw3"]["value"] == pytest.approx(
        doc["layers"][5]["cumulative"]["sqnr_db"]
    )
    assert doc["model_explorer"] == {"path": str(me), "value": "cumulative_sqnr_db"}


def test_debug_table_and_bad_input(capsys, tmp_path):
    assert main(["debug", "--model", "sample:digits_cnn", "--max-samples", "64"]) == 0
    out, _ = capsys.readouterr()
    assert "iso dB" in out and "cum dB" in out and "conv1" in out and "output: KL" in out
    assert main(["debug", "--model", "sample:digits_cnn", "--max-samples", "0"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("quantviz: error:") and "--max-samples" in err
    out_dir = tmp_path / "missing" / "x.json"
    argv = ["debug", "--model", "sample:digits_cnn", "--export-model-explorer", str(out_dir)]
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert "quantviz: error:" in err and "missing" in err


def test_proxies_json(capsys):
    argv = ["proxies", "--model", "sample:digits_cnn", "--bits", "3", "--json", "--no-progress"]
    assert main([*argv, "--proxy", "mse,hessian", "--probes", "4"]) == 0
    doc = json.loads(capsys.readouterr()[0])
    assert doc["proxies"] == ["mse", "hessian"] and set(doc["spearman"]) == {"mse", "hessian"}
    assert [lay["fqn"] for lay in doc["layers"]] == ["conv1", "conv2", "fc1", "fc2"]
    assert all(set(lay["proxies"]) == {"mse", "hessian"} for lay in doc["layers"])
    assert doc["scheme"] == "3 sym ch"
    assert main(["proxies", "--model", "sample:digits_cnn", "--proxy", "bogus"]) == 2
    assert "unknown proxy bogus" in capsys.readouterr()[1]


def test_debug_on_an_onnx_file_says_why_not(capsys, tmp_path):
    """An ONNX model runs as one onnxruntime graph: debug refuses it by name (exit 2)."""
    pytest.importorskip("onnxruntime")
    import warnings

    import torch

    from quantviz.model import load_model

    h = load_model("sample:digits_cnn")
    path = tmp_path / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(h.module, h.example_input, str(path), dynamo=False)
    code = main(["debug", "--model", str(path), "--data", "sample:digits", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "error propagation needs each layer's output" in err


def test_debug_runs_the_config_transforms_and_without_them(capsys, tmp_path):
    cfg = tmp_path / "w4t_cle.yaml"
    cfg.write_text(
        "format: quantviz-config\nversion: 3\n"
        "default:\n  weight: {bits: 4, granularity: per_tensor}\n"
        "transforms: [cle, bias_correction]\n"
    )
    argv = ["debug", "-m", "sample:digits_mobilenet", "-c", str(cfg), "--json", "--no-progress"]
    docs = []
    for extra in ([], ["--transforms", "none"]):
        assert main([*argv, *extra]) == 0
        docs.append(json.loads(capsys.readouterr()[0]))
    with_, without = docs
    assert with_["output"]["top1_agreement"] >= 0.9 > 0.3 > without["output"]["top1_agreement"]
    assert with_["output"]["sqnr_db"] > without["output"]["sqnr_db"] + 10
