"""Config edge cases (issue 15, "Wrong answers accepted silently" / good inputs refused)."""

from __future__ import annotations

import pytest

from quantviz.core.spec import FLOAT, LayerConfig, ModelConfig, QuantSpec
from quantviz.io import ConfigError, config_from_dict, config_from_text, config_to_dict


def v2(**kw):
    return {"format": "quantviz-config", "version": 2, **kw}


@pytest.mark.parametrize(
    ("document", "path", "fragment"),
    [
        (v2(model=""), "model", "must not be empty"),
        (v2(model="   "), "model", "must not be empty"),
        (v2(layers={"": {}}), "layers", "keys must be non-empty strings"),
        (
            v2(default={"weight": {"quantizer": ""}}),
            "default.weight.quantizer",
            "must not be empty",
        ),
        (v2(layers={"c": {"weight": {"granularity": ""}}}), "layers.c.weight.granularity", "empty"),
        (
            v2(layers={"c": {"activation": {"calibration": ""}}}),
            "layers.c.activation.calibration",
            "empty",
        ),
        (
            v2(layers={"c": {"weight": {"quantizer": "fp8_e4m3", "bits": 4}}}),
            "layers.c.weight.bits",
            "fp8_e4m3 has a fixed width of 8 bits, got 4",
        ),
        (
            v2(default={"weight": {"quantizer": "fp8_e5m2", "bits": 16}}),
            "default.weight.bits",
            "fixed width of 8 bits",
        ),
        (
            v2(default={"activation": {"quantizer": "fp4_e2m1", "bits": 8}}),
            "default.activation.bits",
            "fp4_e2m1 has a fixed width of 4 bits, got 8",
        ),
        (
            v2(layers={"c": {"weight": {"quantizer": "nf4", "bits": 8}}}),
            "layers.c.weight.bits",
            "nf4 has a fixed width of 4 bits, got 8",
        ),
        (
            v2(layers={"c": {"weight": {"quantizer": "nf4", "bits": "4"}}}),
            "layers.c.weight.bits",
            "must be an integer",
        ),
        (v2(layers={"c": "float"}), "layers.c", 'must be a mapping with "weight"'),
    ],
)
def test_refused_with_the_field_path(document, path, fragment):
    with pytest.raises(ConfigError) as info:
        config_from_dict(document, source="cfg.json")
    assert info.value.path == path
    assert fragment in info.value.detail
    assert str(info.value).startswith(f"cfg.json: {path}: ")


@pytest.mark.parametrize(
    ("quantizer", "bits"), [("nf4", 4), ("fp4_e2m1", 4), ("fp8_e4m3", 8), ("fp8_e5m2", 8)]
)
def test_a_float_format_with_its_own_width_is_accepted(quantizer, bits):
    cfg = config_from_dict(
        v2(
            default={"weight": {"quantizer": quantizer, "bits": bits}},
            layers={"c": {"activation": {"quantizer": quantizer, "bits": bits}}},
        )
    )
    assert cfg.default.weight == QuantSpec(quantizer=quantizer)
    assert cfg.resolve("c").activation == QuantSpec(quantizer=quantizer)


def test_null_layer_entry_keeps_the_layer_float_in_json_and_yaml():
    cfg = config_from_text(
        '{"format": "quantviz-config", "version": 2, "layers": {"conv1": null}}', "json"
    )
    assert cfg.resolve("conv1") == FLOAT and cfg.resolve("conv2") == LayerConfig()
    assert (
        config_from_text("format: quantviz-config\nversion: 1\nlayers: {conv1: }\n", "yaml") == cfg
    )


def test_blank_model_is_written_as_null():
    assert config_to_dict(ModelConfig(model=" "))["model"] is None
    assert config_to_dict(ModelConfig(model="m.pt2"))["model"] == "m.pt2"


def test_huge_values_are_not_echoed_in_messages():
    big = list(range(100_000))
    with pytest.raises(ConfigError) as info:
        config_from_dict(v2(version=big))
    assert len(str(info.value)) < 200
    with pytest.raises(ConfigError) as info:
        config_from_dict(v2(layers={"c": {"weight": {"bits": "9" * 10_000}}}))
    assert len(str(info.value)) < 300


def test_quantspec_from_dict_refuses_a_width_its_format_does_not_have():
    assert QuantSpec.from_dict({"quantizer": "nf4", "bits": 4}) == QuantSpec(quantizer="nf4")
    assert QuantSpec.from_dict({"quantizer": "fp8_e5m2"}).bits == 8
    with pytest.raises(ValueError, match=r"^bits: fp8_e4m3 has a fixed width of 8 bits, got 4$"):
        QuantSpec.from_dict({"quantizer": "fp8_e4m3", "bits": 4})
    # the constructor still sets the width (the GUI switches quantizers on a spec)
    assert QuantSpec(bits=3, quantizer="fp4_e2m1").bits == 4


def test_yaml_set_and_binary_values_are_messages():
    text = "format: quantviz-config\nversion: 2\ndefault: {weight: {quantizer: !!set {a, b}}}\n"
    with pytest.raises(ConfigError, match=r"default\.weight\.quantizer: must be one of uniform"):
        config_from_text(text, "yaml")
    text = "format: quantviz-config\nversion: 2\ndefault: {weight: {bits: !!binary aGVsbG8=}}\n"
    with pytest.raises(ConfigError, match=r"default\.weight\.bits: must be an integer"):
        config_from_text(text, "yaml")
