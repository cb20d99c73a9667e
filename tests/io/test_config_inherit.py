"""Config version 2: a layer entry is "the default, except ..."; version 1 files keep meaning.

Issue 8, "Per-layer overrides do not inherit from the default".
"""

from __future__ import annotations

import json

import pytest
import yaml

from quantviz.core.spec import FLOAT, LayerConfig, ModelConfig, QuantSpec
from quantviz.io import (
    CONFIG_VERSION,
    ConfigError,
    config_from_dict,
    config_from_text,
    config_to_dict,
    load_config,
    save_config,
)

CH8 = QuantSpec(bits=8, granularity="per_channel", axis=0)
A8 = QuantSpec(bits=8, symmetric=False, calibration="percentile", percentile=99.9)


def v2(**kw):
    return {"format": "quantviz-config", "version": 2, **kw}


def v1(**kw):
    return {"format": "quantviz-config", "version": 1, **kw}


def test_current_version_is_3():
    assert CONFIG_VERSION == 3
    assert config_to_dict(ModelConfig())["version"] == 3


def test_omitted_fields_inherit_from_the_default_spec():
    cfg = config_from_dict(
        v2(
            default={"weight": {"granularity": "per_channel"}, "activation": A8.to_dict()},
            layers={
                "conv1": {"weight": {"bits": 4}},
                "conv2": {"weight": {}, "activation": {"bits": 6}},
                "fc": {"activation": {"quantizer": "fp8_e4m3"}},
            },
        )
    )
    assert cfg.resolve("conv1") == LayerConfig(QuantSpec(bits=4, granularity="per_channel"), A8)
    assert cfg.resolve("conv2") == LayerConfig(CH8, A8.with_(bits=6))
    # a fixed-width format takes its own width, never the inherited bits
    fp8 = QuantSpec(
        quantizer="fp8_e4m3", symmetric=False, calibration="percentile", percentile=99.9
    )
    assert cfg.resolve("fc").activation == fp8


def test_empty_spec_means_as_the_default():
    cfg = config_from_dict(v2(default={"weight": CH8.to_dict()}, layers={"c": {"weight": {}}}))
    assert cfg.resolve("c") == cfg.default


def test_float_default_means_quantspec_defaults():
    cfg = config_from_dict(
        v2(default={"weight": None, "activation": None}, layers={"c": {"weight": {"bits": 4}}})
    )
    assert cfg.resolve("c") == LayerConfig(QuantSpec(bits=4), None)


def test_null_entry_keeps_the_layer_float():
    cfg = config_from_dict(
        v2(default={"weight": {}, "activation": {}}, layers={"conv1": None, "fc*": {}})
    )
    assert cfg.resolve("conv1") == FLOAT
    assert cfg.resolve("fc1") == cfg.default
    # and it comes back the same
    assert config_from_dict(config_to_dict(cfg)) == cfg
    yml = "format: quantviz-config\nversion: 2\nlayers:\n  conv1: null\n  conv2: ~\n  fc:\n"
    back = config_from_text(yml, "yaml")
    assert [lc for _, lc in back.overrides] == [FLOAT, FLOAT, FLOAT]


def test_writer_is_minimal_relative_to_the_default():
    cfg = ModelConfig(
        default=LayerConfig(CH8, A8),
        overrides=(
            ("conv1", LayerConfig(CH8.with_(bits=4), A8)),
            ("conv2", LayerConfig(QuantSpec(bits=4), A8.with_(dynamic=True))),
            ("fc", LayerConfig(QuantSpec(quantizer="nf4", granularity="per_channel"), None)),
            ("same", LayerConfig(CH8, A8)),
        ),
    )
    d = config_to_dict(cfg)
    assert d["layers"] == {
        "conv1": {"weight": {"bits": 4}},
        "conv2": {
            "weight": {"bits": 4, "granularity": "per_tensor"},
            "activation": {"dynamic": True},
        },
        "fc": {"weight": {"quantizer": "nf4"}, "activation": None},
        "same": {},
    }
    assert config_from_dict(d) == cfg


def test_fixed_width_bits_equal_value_accepted_other_refused():
    ok = config_from_dict(v2(layers={"a": {"weight": {"quantizer": "nf4", "bits": 4}}}))
    assert ok.resolve("a").weight == QuantSpec(quantizer="nf4")
    for q, width in (("fp8_e4m3", 8), ("fp8_e5m2", 8), ("fp4_e2m1", 4), ("nf4", 4)):
        assert config_from_dict(v2(default={"weight": {"quantizer": q, "bits": width}}))
        bad = 4 if width == 8 else 8
        with pytest.raises(ConfigError) as info:
            config_from_dict(v2(layers={"a": {"weight": {"quantizer": q, "bits": bad}}}))
        assert info.value.path == "layers.a.weight.bits"
        assert f"{q} has a fixed width of {width} bits, got {bad}" in info.value.detail
    # an inherited fixed-width quantizer with other bits: refused, naming the field
    with pytest.raises(ConfigError, match=r"layers\.a\.weight\.bits: nf4 has a fixed width"):
        config_from_dict(
            v2(default={"weight": {"quantizer": "nf4"}}, layers={"a": {"weight": {"bits": 8}}})
        )
    # an integer quantizer over a fixed-width default inherits the default's width
    cfg = config_from_dict(
        v2(
            default={"weight": {"quantizer": "fp4_e2m1"}},
            layers={"a": {"weight": {"quantizer": "uniform"}}},
        )
    )
    assert cfg.resolve("a").weight == QuantSpec(bits=4)


def test_error_on_an_inherited_field_says_where_it_comes_from():
    with pytest.raises(ConfigError) as info:
        config_from_dict(
            v2(
                default={"weight": {"restricted_range": True}},
                layers={"conv1": {"weight": {"symmetric": False}}},
            ),
            source="cfg.json",
        )
    err = info.value
    assert err.path == "layers.conv1.weight.restricted_range"
    assert "only applies to a symmetric range" in err.detail
    assert "inherited from default.weight" in err.detail
    # giving the field in the entry fixes it
    cfg = config_from_dict(
        v2(
            default={"weight": {"restricted_range": True}},
            layers={"conv1": {"weight": {"symmetric": False, "restricted_range": False}}},
        )
    )
    assert cfg.resolve("conv1").weight == QuantSpec(symmetric=False)


# -- version 1 keeps its meaning --------------------------------------------------------------
def test_version_1_entry_fields_meant_quantspec_defaults():
    old = v1(
        default={"weight": {"granularity": "per_channel", "bits": 6}, "activation": A8.to_dict()},
        layers={
            "conv1": {"weight": {"bits": 4}},
            "conv2": {"weight": {}},
            "fc": {"weight": {"quantizer": "nf4"}, "activation": {"bits": 8}},
            "head": {"activation": None},
            "all": {},
        },
    )
    cfg = config_from_dict(old)
    assert cfg.resolve("conv1") == LayerConfig(QuantSpec(bits=4), A8)
    assert cfg.resolve("conv2") == LayerConfig(QuantSpec(), A8)
    assert cfg.resolve("fc") == LayerConfig(QuantSpec(quantizer="nf4"), QuantSpec(bits=8))
    assert cfg.resolve("head") == LayerConfig(cfg.default.weight, None)
    assert cfg.resolve("all") == cfg.default
    # saved again, it is a version-2 file with the same meaning
    d = config_to_dict(cfg)
    assert d["version"] == 3
    assert d["layers"]["conv1"] == {"weight": {"bits": 4, "granularity": "per_tensor"}}
    assert config_from_dict(d) == cfg


def test_version_1_file_on_disk(tmp_path):
    p = tmp_path / "old.yaml"
    p.write_text(
        "format: quantviz-config\nversion: 1\n"
        "default:\n  weight: {bits: 8, granularity: per_channel}\n"
        "layers:\n  conv1:\n    weight: {bits: 4}\n"
    )
    cfg = load_config(p)
    assert cfg.resolve("conv1").weight == QuantSpec(bits=4)  # per-tensor, as it always meant
    save_config(cfg, p)
    assert yaml.safe_load(p.read_text())["version"] == 3
    assert load_config(p) == cfg


def test_version_1_with_an_invalid_default_reports_the_default():
    with pytest.raises(ConfigError) as info:
        config_from_dict(v1(default={"weight": {"bits": 0}}, layers={"a": {"weight": {}}}))
    assert info.value.path == "default.weight.bits"


def test_version_1_layer_errors_keep_their_path():
    with pytest.raises(ConfigError) as info:
        config_from_dict(
            v1(
                default={"weight": {"granularity": "per_channel"}},
                layers={"a": {"weight": {"bitz": 1}}},
            )
        )
    assert info.value.path == "layers.a.weight.bitz"


def test_session_files_read_old_embedded_configs(tmp_path):
    """A session written before version 2 holds version-1 config documents."""
    from quantviz.io.session_file import load_session

    old_cfg = v1(
        default={"weight": {"granularity": "per_channel"}},
        layers={"conv1": {"weight": {"bits": 4}}},
    )
    p = tmp_path / "old.quantviz"
    p.write_text(
        json.dumps(
            {
                "format": "quantviz-session",
                "version": 1,
                "model": "sample:digits_cnn",
                "current": "W4",
                "configs": {"W4": old_cfg},
            }
        )
    )
    s = load_session(p)
    assert s.configs["W4"].resolve("conv1").weight == QuantSpec(bits=4)
    assert s.configs["W4"].resolve("conv2").weight == QuantSpec(granularity="per_channel")
