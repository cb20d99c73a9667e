"""import_config: validates fields and layer names together; all problems in one error."""

from __future__ import annotations

import json

import pytest
import yaml

from quantviz.core import QuantSpec
from quantviz.io.config import ConfigError
from quantviz.io.importing import ConfigImportError, import_config
from quantviz.model import load_model


@pytest.fixture(scope="module")
def handle():
    return load_model("sample:digits_cnn")


def _write(tmp_path, doc, name="c.json"):
    p = tmp_path / name
    if name.endswith(".json"):
        p.write_text(json.dumps(doc))
    else:
        p.write_text(yaml.safe_dump(doc))
    return p


def _doc(**kw):
    return {"format": "quantviz-config", "version": 1, **kw}


def test_valid_config_is_returned(tmp_path, handle):
    p = _write(
        tmp_path,
        _doc(default={"weight": {"bits": 6}}, layers={"conv1": {"weight": {"bits": 4}}, "fc*": {}}),
        "c.yaml",
    )
    cfg = import_config(p, handle)
    assert cfg.resolve("conv1").weight == QuantSpec(bits=4)
    assert cfg.resolve("fc2").weight == QuantSpec(bits=6)


def test_all_problems_listed_together(tmp_path, handle):
    p = _write(
        tmp_path,
        _doc(
            default={"weight": {"bits": 0}},
            layers={
                "convX": {"weight": {"bits": 4}},
                "fc1": {"weight": {"quantizer": "foo"}},
                "conv2": {"bogus": 1},
                "nothing*": {},
            },
        ),
    )
    with pytest.raises(ConfigImportError) as info:
        import_config(p, handle)
    err = info.value
    assert isinstance(err, ConfigError) and isinstance(err, ValueError)
    assert err.problems == [
        "default.weight.bits: must be 1..16, got 0",
        "layers.fc1.weight.quantizer: must be one of uniform, log2, kmeans, fp8_e4m3, "
        "fp8_e5m2, fp4_e2m1, nf4, mxfp8_e4m3, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8, nvfp4; "
        "got 'foo'",
        "layers.conv2.bogus: unknown field (known: weight, activation)",
        "layers.convX: matches no layer of digits_cnn (layers: conv1, conv2, fc1, fc2)",
        "layers.nothing*: matches no layer of digits_cnn (layers: conv1, conv2, fc1, fc2)",
    ]
    msg = str(err)
    assert msg.startswith(str(p)) and "5 problems" in msg


def test_unknown_layer_names_only(tmp_path, handle):
    p = _write(tmp_path, _doc(layers={"conv1": {}, "dense": {"weight": None}}))
    with pytest.raises(ConfigImportError, match="layers.dense: matches no layer") as info:
        import_config(p, handle)
    assert len(info.value.problems) == 1


@pytest.mark.parametrize(
    "text, name, match",
    [
        ("{not json", "c.json", "invalid JSON"),
        ("[1, 2]", "c.json", "must be a mapping"),
        ('{"format": "quantviz-config", "version": 99}', "c.json", "version"),
        ("default: {weight: {bits: 4}}", "c.txt", "unknown config file type"),
    ],
)
def test_unreadable_files_give_one_problem(tmp_path, handle, text, name, match):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        import_config(p, handle)
    assert len(info.value.problems) == 1 and name in str(info.value)


def test_missing_file(tmp_path, handle):
    with pytest.raises(ConfigError, match="nope.json: no such file"):
        import_config(tmp_path / "nope.json", handle)
