"""Bundled samples: listed, loadable, and as accurate as PROVENANCE.md says."""

from __future__ import annotations

import pytest
import torch

from quantviz.data import MetricAccumulator, load_data
from quantviz.model import list_samples, load_model
from quantviz.model.samples import SAMPLE_DATA_ENV, sample_data_dir


def test_list_samples():
    assert list_samples() == ["digits_cnn", "digits_mobilenet", "tiny_lm"]


@pytest.mark.parametrize("name", ["digits_cnn", "digits_mobilenet"])
def test_sample_accuracy_on_bundled_test_split(name):
    h = load_model(f"sample:{name}")
    data = load_data(None, h)
    assert data.name == "sample:digits" and len(data) == 360 and data.calib_x.shape[0] == 256
    acc = MetricAccumulator(h.num_classes)
    with torch.no_grad():
        for x, y in data.batches(100):
            acc.update(h.module(x), y)
    res = acc.result()
    assert res["metric"] == "accuracy" and res["value"] >= 0.97 and res["top5"] >= res["value"]


def test_mobilenet_is_depthwise_separable():
    h = load_model("sample:digits_mobilenet")
    assert [lay.fqn for lay in h.layers if lay.depthwise] == ["dw1", "dw2", "dw3"]


def test_digits_splits_are_disjoint():
    from quantviz.data.datasets import load_digits

    d = load_digits()
    sets = [set(d[k].tolist()) for k in ("train_idx", "calib_idx", "test_idx")]
    assert sum(len(s) for s in sets) == len(d["x"]) == 1797
    assert len(set.union(*sets)) == 1797
    assert d["x"].dtype.name == "float32" and d["x"].min() >= 0 and d["x"].max() <= 1


def test_sample_data_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv(SAMPLE_DATA_ENV, str(tmp_path))
    assert sample_data_dir() == tmp_path
    with pytest.raises(ValueError, match=r"digits_cnn\.safetensors.*not found"):
        load_model("sample:digits_cnn")
