"""quantviz.io.config: the config file format, its validation messages and migrations."""

from __future__ import annotations

import json
import os
import stat

import pytest
import yaml

from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec
from quantviz.io import (
    ConfigError,
    config_from_dict,
    config_from_text,
    config_to_dict,
    config_to_text,
    load_config,
    save_config,
)
from quantviz.io.config import MIGRATIONS

W8CH = QuantSpec(bits=8, granularity="per_channel")
EXAMPLE = ModelConfig(
    default=LayerConfig(weight=W8CH, activation=None),
    overrides=(
        ("conv1", LayerConfig(weight=QuantSpec(bits=4, quantizer="kmeans"), activation=None)),
        ("fc2", LayerConfig(weight=None, activation=None)),
    ),
    model="sample:digits_cnn",
)
# The document of DESIGN.md's "Config file" section, verbatim.
DESIGN_DOC = {
    "format": "quantviz-config",
    "version": 1,
    "model": "sample:digits_cnn",
    "default": {"weight": {"bits": 8, "granularity": "per_channel"}, "activation": None},
    "layers": {"conv1": {"weight": {"bits": 4, "quantizer": "kmeans"}}, "fc2": {"weight": None}},
}


def doc(**changes):
    d = {"format": "quantviz-config", "version": 3}
    d.update(changes)
    return d


# -- the format ---------------------------------------------------------------------------
def test_design_example_reads_as_documented():
    assert config_from_dict(DESIGN_DOC) == EXAMPLE


def test_to_dict_writes_only_non_default_fields():
    # conv1 is per-tensor while the default is per-channel: written, since it differs.
    assert config_to_dict(EXAMPLE) == {
        "format": "quantviz-config",
        "version": 3,
        "model": "sample:digits_cnn",
        "default": {"weight": {"granularity": "per_channel"}, "activation": None},
        "layers": {
            "conv1": {"weight": {"bits": 4, "quantizer": "kmeans", "granularity": "per_tensor"}},
            "fc2": {"weight": None},
        },
    }


def test_minimal_document_is_the_default_config():
    assert config_from_dict(doc()) == ModelConfig()
    assert config_from_dict(doc(default={})) == ModelConfig()
    assert config_from_dict(doc(default={"weight": {}})).default.weight == QuantSpec()


def test_layer_entry_inherits_omitted_tensors_from_default():
    a8 = QuantSpec(bits=8, symmetric=False)
    cfg = config_from_dict(
        doc(
            default={"weight": {"bits": 6}, "activation": {"symmetric": False}},
            layers={
                "conv1": {"weight": {"bits": 4}},  # activation inherited
                "fc": {"activation": None},  # weight inherited, activation float
                "all": {},  # both inherited
            },
        )
    )
    assert cfg.resolve("conv1") == LayerConfig(QuantSpec(bits=4), a8)
    assert cfg.resolve("fc") == LayerConfig(QuantSpec(bits=6), None)
    assert cfg.resolve("all") == cfg.default
    assert cfg.resolve("other") == LayerConfig(QuantSpec(bits=6), a8)


def test_override_order_is_preserved_both_ways():
    keys = ["z*", "features.*", "features.3", "a", "0"]
    layers = {k: {"weight": {"bits": i + 2}} for i, k in enumerate(keys)}
    cfg = config_from_dict(doc(layers=layers))
    assert [k for k, _ in cfg.overrides] == keys
    assert cfg.resolve("features.3").weight.bits == 4  # the later exact key wins
    reordered = ModelConfig(overrides=tuple(reversed(cfg.overrides)))
    assert list(config_to_dict(reordered)["layers"]) == list(reversed(keys))
    assert reordered.resolve("features.3").weight.bits == 3  # now the glob is last
    for fmt in ("json", "yaml"):
        back = config_from_text(config_to_text(reordered, fmt), fmt)
        assert back == reordered
        assert [k for k, _ in back.overrides] == list(reversed(keys))


def test_json_and_yaml_give_the_same_object(tmp_path):
    for name in ("c.json", "c.yaml", "c.yml"):
        save_config(EXAMPLE, tmp_path / name)
        assert load_config(tmp_path / name) == EXAMPLE
    assert json.loads((tmp_path / "c.json").read_text()) == yaml.safe_load(
        (tmp_path / "c.yaml").read_text()
    )


def test_hand_written_yaml(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text(
        "# hand-written\n"
        "format: quantviz-config\n"
        "version: 1\n"
        "default:\n"
        "  weight: {bits: 8, granularity: per_channel}\n"
        "  activation: ~\n"
        "layers:\n"
        "  conv1:\n"
        "    weight: {bits: 4, quantizer: kmeans}\n"
        "  fc2: {weight: null}\n"
        "  '0': {activation: {bits: 8, dynamic: yes}}\n"
    )
    cfg = load_config(p)
    assert cfg.overrides[:2] == EXAMPLE.overrides
    assert cfg.resolve("0") == LayerConfig(W8CH, QuantSpec(dynamic=True))
    assert cfg.model is None


def test_yaml_quotes_keys_that_look_like_other_types():
    cfg = ModelConfig(overrides=[(k, LayerConfig(None)) for k in ("0", "yes", "null", "1.5", "~")])
    text = config_to_text(cfg, "yaml")
    assert config_from_text(text, "yaml") == cfg


def test_utf8_bom_is_accepted(tmp_path):
    p = tmp_path / "bom.json"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(DESIGN_DOC).encode())
    assert load_config(p) == EXAMPLE


def test_fixed_width_bits_may_be_given_when_they_agree():
    cfg = config_from_dict(doc(default={"weight": {"quantizer": "fp8_e4m3", "bits": 8}}))
    assert cfg.default.weight == QuantSpec(quantizer="fp8_e4m3")


# -- validation messages --------------------------------------------------------------------
BAD = [
    # (document, path, message fragment)
    (
        doc(layers={"conv1": {"weight": {"bits": 0}}}),
        "layers.conv1.weight.bits",
        "must be 1..16, got 0",
    ),
    (
        doc(layers={"conv1": {"weight": {"bits": 17}}}),
        "layers.conv1.weight.bits",
        "must be 1..16, got 17",
    ),
    (
        doc(layers={"c": {"weight": {"bits": "4"}}}),
        "layers.c.weight.bits",
        "must be an integer, got '4'",
    ),
    (doc(layers={"c": {"weight": {"bits": True}}}), "layers.c.weight.bits", "must be an integer"),
    (doc(layers={"c": {"weight": {"bits": 4.0}}}), "layers.c.weight.bits", "must be an integer"),
    (
        doc(default={"weight": {"bitz": 4}}),
        "default.weight.bitz",
        "unknown field (known: bits, quantizer",
    ),
    (
        doc(default={"weight": {"quantizer": "int4"}}),
        "default.weight.quantizer",
        "must be one of uniform, log2",
    ),
    (
        doc(default={"weight": {"quantizer": "log2", "bits": 1}}),
        "default.weight.bits",
        "log2 needs at least 2 bits",
    ),
    (
        doc(default={"weight": {"symmetric": "yes"}}),
        "default.weight.symmetric",
        "must be true or false",
    ),
    (
        doc(default={"weight": {"symmetric": False, "restricted_range": True}}),
        "default.weight.restricted_range",
        "only applies to a symmetric",
    ),
    (
        doc(default={"activation": {"granularity": "per_row"}}),
        "default.activation.granularity",
        "must be one of per_tensor",
    ),
    (
        doc(default={"activation": {"group_size": 0}}),
        "default.activation.group_size",
        "must be >= 1, got 0",
    ),
    (
        doc(default={"activation": {"calibration": "entropy"}}),
        "default.activation.calibration",
        "must be one of minmax",
    ),
    (
        doc(default={"activation": {"percentile": 40}}),
        "default.activation.percentile",
        "must be in (50, 100], got 40",
    ),
    (
        doc(default={"activation": {"percentile": "high"}}),
        "default.activation.percentile",
        "must be a number",
    ),
    (
        doc(default={"activation": {"axis": None}}),
        "default.activation.axis",
        "must be an integer, got None",
    ),
    (
        doc(default={"weight": {"quantizer": "nf4", "bits": 3}}),
        "default.weight.bits",
        "nf4 has a fixed width of 4 bits, got 3",
    ),
    (
        doc(default={"weight": 8}),
        "default.weight",
        "must be a mapping of QuantSpec fields or null, got an integer",
    ),
    (doc(default={"weight": [8]}), "default.weight", "got a list"),
    (doc(default={"weights": {}}), "default.weights", "unknown field (known: weight, activation)"),
    (doc(default=None), "default", 'must be a mapping with "weight" and/or "activation", got null'),
    (doc(default="w8"), "default", "got a string"),
    (
        doc(layers=[["conv1", {}]]),
        "layers",
        "must be a mapping of layer name or glob -> entry, got a list",
    ),
    (doc(layers={"conv1": 4}), "layers.conv1", 'must be a mapping with "weight"'),
    (
        doc(layers={"conv1": {"wieght": {}}}),
        "layers.conv1.wieght",
        "unknown field (known: weight, activation)",
    ),
    (doc(layers={"": {}}), "layers", "keys must be non-empty strings"),
    (doc(layers={3: {}}), "layers", "got 3"),
    (
        doc(layers={"features.0": {"activation": {"bits": -1}}}),
        "layers.features.0.activation.bits",
        "must be 1..16, got -1",
    ),
    (doc(model=3), "model", "must be a string or null, got an integer"),
    (
        doc(extra=1),
        "extra",
        "unknown field (known: format, version, model, transforms, default, layers)",
    ),
    ({"version": 1}, "format", 'missing; a quantviz config has "format": "quantviz-config"'),
    (doc(format="onnx"), "format", "must be 'quantviz-config', got 'onnx'"),
    ({"format": "quantviz-config"}, "version", "missing; the current version is 3"),
    (doc(version="1"), "version", "must be an integer, got '1'"),
    (doc(version=True), "version", "must be an integer, got True"),
    (doc(version=-1), "version", "-1 is not a known quantviz-config version"),
    (doc(version=4), "version", "written by a newer quantviz (version 4); this one reads up to 3"),
    (doc(version=0, layers={}), "layers", 'unknown field in version 0 (it uses "overrides")'),
    (
        doc(version=0, overrides={"a": {}}),
        "overrides",
        "must be a list of [pattern, entry] pairs, got a mapping",
    ),
    (doc(version=0, overrides=[["a"]]), "overrides[0]", "must be a [pattern, entry] pair"),
    (
        doc(version=0, overrides=[["a", {}], [None, {}]]),
        "overrides[1]",
        "pattern must be a non-empty string",
    ),
    (doc(version=0, overrides=[["a", {}], ["a", {}]]), "overrides[1]", "'a' appears twice"),
    (
        doc(version=0, overrides=[["a", {"weight": {"bits": 0}}]]),
        "layers.a.weight.bits",
        "must be 1..16",
    ),
]


@pytest.mark.parametrize(("document", "path", "fragment"), BAD)
def test_bad_documents_name_the_field(document, path, fragment):
    with pytest.raises(ConfigError) as info:
        config_from_dict(document, source="cfg.json")
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == path
    assert err.file == "cfg.json"
    assert fragment in err.detail
    assert str(err) == f"cfg.json: {path}: {err.detail}"


def test_exact_message_from_a_file(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text("format: quantviz-config\nversion: 1\nlayers:\n  conv1:\n    weight: {bits: 0}\n")
    with pytest.raises(ValueError) as info:
        load_config(p)
    assert str(info.value) == f"{p}: layers.conv1.weight.bits: must be 1..16, got 0"


def test_newer_version_message(tmp_path):
    p = tmp_path / "new.json"
    p.write_text(json.dumps(doc(version=4, layers={"x": {"future": 1}})))
    with pytest.raises(
        ConfigError, match=r"written by a newer quantviz \(version 4\); this one reads up to 3"
    ):
        load_config(p)


def test_not_a_mapping_at_top_level():
    with pytest.raises(ConfigError, match=r"^<dict>: must be a mapping .* got a list$"):
        config_from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"^x: must be a mapping .*got null \(the file is empty\)"
    ):
        config_from_dict(None, source="x")  # type: ignore[arg-type]


def test_no_source_no_prefix():
    with pytest.raises(ConfigError) as info:
        config_from_dict(doc(model=1), source=None)
    assert str(info.value) == "model: must be a string or null, got an integer"


# -- file-level errors ----------------------------------------------------------------------
def test_missing_file(tmp_path):
    p = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file$"):
        load_config(p)


def test_directory(tmp_path):
    d = tmp_path / "dir.json"
    d.mkdir()
    with pytest.raises(ConfigError, match=r"dir\.json: is a directory"):
        load_config(d)


@pytest.mark.skipif(
    os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads anything"
)
def test_unreadable_file(tmp_path):
    p = tmp_path / "secret.json"
    p.write_text("{}")
    p.chmod(0)
    with pytest.raises(ConfigError, match=r"secret\.json: cannot read: Permission denied"):
        load_config(p)


def test_binary_file(tmp_path):
    p = tmp_path / "model.json"
    p.write_bytes(b"\x80\x81\xff\x00PK")
    with pytest.raises(ConfigError, match=r"model\.json: not UTF-8 text \(byte 0\)"):
        load_config(p)


@pytest.mark.parametrize("name", ["cfg.txt", "cfg", "cfg.json.bak", "cfg.onnx"])
def test_unknown_suffix_names_the_file(tmp_path, name):
    p = tmp_path / name
    with pytest.raises(
        ValueError, match=rf"{name}: unknown config file type .*use \.json, \.yaml or \.yml"
    ):
        load_config(p)
    with pytest.raises(ValueError, match=rf"{name}: unknown config file type"):
        save_config(EXAMPLE, p)
    assert not p.exists()


def test_uppercase_suffix(tmp_path):
    p = tmp_path / "CFG.JSON"
    save_config(EXAMPLE, p)
    assert load_config(p) == EXAMPLE


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        (
            '{"format": "quantviz-config",\n "version": 1,\n "layers": {,}\n}',
            ", line 3, column 13",
            "invalid JSON: Expecting property name",
        ),
        (
            '{"format": "quantviz-config"\n "version": 1}',
            ", line 2, column 2",
            "invalid JSON: Expecting ',' delimiter",
        ),
        ("", ", line 1, column 1", "invalid JSON: Expecting value"),
        (
            '{"format": "quantviz-config", "version": 1, "layers": {"a": {}, "a": {}}}',
            "",
            "invalid JSON: duplicate key 'a'",
        ),
        ("[1, 2]", "", "must be a mapping"),
    ],
)
def test_json_syntax_errors(tmp_path, text, where, fragment):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value).startswith(f"{p}{where}: ")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (
            "format: quantviz-config\nversion: 1\nlayers:\n  a: b: c\n",
            4,
            "mapping values are not allowed here",
        ),
        ("format: quantviz-config\nversion: 1\nlayers: [1, 2\n", 4, "expected ',' or ']'"),
        (
            "format: quantviz-config\nversion: 1\nlayers:\n  conv1: {}\n  conv1: {}\n",
            5,
            "found duplicate key 'conv1'",
        ),
        ("format: quantviz-config\n\tversion: 1\n", 2, "found character '\\t'"),
        ("format: quantviz-config\n---\nversion: 1\n", 2, "expected a single document"),
        ("format: !!python/object:os.system ls\n", 1, "could not determine a constructor"),
    ],
)
def test_yaml_syntax_errors_carry_the_line(tmp_path, text, line, fragment):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.line == line
    assert str(info.value).startswith(f"{p}, line {line}, column ")
    assert "invalid YAML: " in str(info.value)
    assert fragment in str(info.value)


def test_empty_yaml_file(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("# nothing here\n")
    with pytest.raises(
        ConfigError, match=r"empty\.yaml: must be a mapping .*\(the file is empty\)"
    ):
        load_config(p)


def test_yaml_types_that_json_has_not(tmp_path):
    p = tmp_path / "date.yaml"
    p.write_text("format: quantviz-config\nversion: 1\nmodel: 2024-01-02\n")
    with pytest.raises(ConfigError, match=r"date\.yaml: model: must be a string or null, got date"):
        load_config(p)


def test_bad_format_argument():
    with pytest.raises(ValueError, match="format: must be 'json' or 'yaml', got 'toml'"):
        config_to_text(EXAMPLE, "toml")
    with pytest.raises(ValueError, match="format: must be 'json' or 'yaml', got 'toml'"):
        config_from_text("{}", "toml")


def test_save_needs_a_model_config(tmp_path):
    with pytest.raises(TypeError, match="save_config needs a ModelConfig, got LayerConfig"):
        save_config(LayerConfig(), tmp_path / "x.json")  # type: ignore[arg-type]


# -- versions ---------------------------------------------------------------------------------
def test_version_0_is_migrated(tmp_path):
    v0 = {
        "format": "quantviz-config",
        "version": 0,
        "model": "sample:digits_cnn",
        "default": {"weight": {"bits": 8, "granularity": "per_channel"}, "activation": None},
        "overrides": [
            ["conv1", {"weight": {"bits": 4, "quantizer": "kmeans"}}],
            ["fc2", {"weight": None}],
        ],
    }
    assert config_from_dict(v0) == EXAMPLE
    p = tmp_path / "old.yaml"
    p.write_text(yaml.safe_dump(v0, sort_keys=False))
    assert load_config(p) == EXAMPLE
    # Saving writes the current version.
    save_config(load_config(p), p)
    assert yaml.safe_load(p.read_text())["version"] == 3
    assert "overrides" not in yaml.safe_load(p.read_text())


def test_version_0_without_overrides():
    assert config_from_dict(doc(version=0)) == ModelConfig()


def test_migrations_cover_every_old_version():
    from quantviz.io.config import CONFIG_VERSION

    assert sorted(MIGRATIONS) == list(range(CONFIG_VERSION))


def test_migration_does_not_modify_the_input():
    v0 = doc(version=0, overrides=[["a", {}]])
    before = json.dumps(v0)
    config_from_dict(v0)
    assert json.dumps(v0) == before


# -- atomic save ------------------------------------------------------------------------------
def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    p = tmp_path / "cfg.json"
    p.write_text("old")
    save_config(EXAMPLE, p)
    assert load_config(p) == EXAMPLE
    assert sorted(os.listdir(tmp_path)) == ["cfg.json"]


def test_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "cfg.yaml"
    save_config(EXAMPLE, p)
    before = p.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(ConfigError, match=r"cfg\.yaml: cannot write: No space left on device"):
        save_config(ModelConfig(), p)
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["cfg.yaml"]


def test_save_into_missing_directory(tmp_path):
    p = tmp_path / "missing" / "cfg.json"
    with pytest.raises(ConfigError, match=r"cfg\.json: cannot write: No such file or directory"):
        save_config(EXAMPLE, p)


def test_saved_file_gets_normal_permissions(tmp_path):
    p = tmp_path / "cfg.json"
    save_config(EXAMPLE, p)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
