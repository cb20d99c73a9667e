"""Grouped editing without Qt: glob / regex override keys, the pure override edits
(set for a pattern, remove, move: the last match wins) and the block grouping of layers."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantviz.app.layer_groups import block_of, group_layers
from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec
from quantviz.io.config import ConfigError, config_from_dict, config_to_dict
from quantviz.session import (
    layers_matching,
    move_override,
    override_info,
    remove_override,
    set_layer_spec,
    set_pattern_spec,
)

FQNS = (
    ["embed"]
    + [
        f"layers.{i}.{part}"
        for i in range(12)
        for part in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        )
    ]
    + ["lm_head"]
)

W4 = QuantSpec(bits=4, granularity="per_group", group_size=32)
W6 = QuantSpec(bits=6)


def test_glob_and_regex_keys_match_whole_names():
    mlp = layers_matching("*.mlp.*", FQNS)
    assert len(mlp) == 24 and all(".mlp." in f for f in mlp)
    v = layers_matching(r"re:layers\.\d+\.self_attn\.v_proj", FQNS)
    assert v == [f"layers.{i}.self_attn.v_proj" for i in range(12)]
    # a regex matches the whole name, not a part of it
    assert layers_matching("re:layers\\.1", FQNS) == []
    assert len(layers_matching(r"re:layers\.1\d?\..*", FQNS)) == 18  # blocks 1, 10, 11
    assert layers_matching("lm_head", FQNS) == ["lm_head"]
    assert layers_matching("layers.?.mlp.up_proj", FQNS) == [
        f"layers.{i}.mlp.up_proj" for i in range(10)
    ]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("re:layers.(", "invalid regular expression: missing ), unterminated subpattern"),
        ("re:", "'re:' needs a regular expression"),
        ("  ", "must be a layer name, a glob or re:<regex>"),
    ],
)
def test_bad_pattern_is_a_clear_error(key, message):
    with pytest.raises(ValueError, match="pattern: ") as e:
        layers_matching(key, FQNS)
    assert message in str(e.value)
    with pytest.raises(ValueError, match="pattern: "):
        set_pattern_spec(ModelConfig(), key, "weight", W4)


def test_regex_key_in_a_config_file_round_trips_and_a_bad_one_names_the_key():
    cfg = set_pattern_spec(ModelConfig(), r"re:layers\.\d+\.self_attn\.v_proj", "weight", W6)
    back = config_from_dict(config_to_dict(cfg))
    assert back == cfg
    assert back.resolve("layers.7.self_attn.v_proj").weight == W6
    assert back.resolve("layers.7.self_attn.q_proj") == back.default
    doc = config_to_dict(cfg)
    doc["layers"] = {"re:layers.(": {"weight": {"bits": 4}}}
    with pytest.raises((ConfigError, ValueError)) as e:
        config_from_dict(doc)
    assert "re:layers.(" in str(e.value) and "invalid regular expression" in str(e.value)


def test_set_pattern_spec_is_one_edit_for_every_match_and_last_match_wins():
    cfg = set_pattern_spec(ModelConfig(), "*.mlp.*", "weight", W4)
    assert [k for k, _ in cfg.overrides] == ["*.mlp.*"]
    got = {f: cfg.resolve(f).weight for f in FQNS}
    assert sum(1 for w in got.values() if w == W4) == 24
    assert got["layers.3.self_attn.q_proj"] == QuantSpec()
    # a second pattern that also matches layers.3.mlp.*: it is last, so it wins there
    cfg = set_pattern_spec(cfg, "layers.3.*", "weight", W6)
    assert cfg.resolve("layers.3.mlp.up_proj").weight == W6
    assert cfg.resolve("layers.4.mlp.up_proj").weight == W4
    # move the block override first: the mlp glob wins again for layers.3.mlp.*
    moved = move_override(cfg, "layers.3.*", 0)
    assert [k for k, _ in moved.overrides] == ["layers.3.*", "*.mlp.*"]
    assert moved.resolve("layers.3.mlp.up_proj").weight == W4
    assert moved.resolve("layers.3.self_attn.q_proj").weight == W6
    info = {i.key: (i.matched, i.decided) for i in override_info(moved, FQNS)}
    assert info == {"layers.3.*": (6, 4), "*.mlp.*": (24, 24)}
    info = {i.key: (i.matched, i.decided) for i in override_info(cfg, FQNS)}
    assert info == {"*.mlp.*": (24, 22), "layers.3.*": (6, 6)}
    # setting an existing pattern's activation keeps its weight and moves it last
    a8 = QuantSpec(bits=8)
    again = set_pattern_spec(moved, "layers.3.*", "activation", a8)
    assert again.override_dict["layers.3.*"] == LayerConfig(weight=W6, activation=a8)
    assert [k for k, _ in again.overrides] == ["*.mlp.*", "layers.3.*"]
    # removing it: back to the glob alone
    gone = remove_override(again, "layers.3.*")
    assert gone.resolve("layers.3.mlp.up_proj").weight == W4
    assert gone.resolve("layers.3.self_attn.q_proj") == gone.default
    with pytest.raises(ValueError, match="override: no override 'nope'"):
        remove_override(gone, "nope")
    with pytest.raises(ValueError, match="override: no override 'nope'"):
        move_override(gone, "nope", 0)


def test_exact_edits_under_a_regex_override_are_not_dropped_as_redundant():
    cfg = set_pattern_spec(ModelConfig(), r"re:.*\.mlp\..*", "weight", W4)
    # the user puts one mlp layer back to the default: an exact override is needed, and
    # it must stay (it shadows the regex)
    cfg = set_layer_spec(cfg, ["layers.2.mlp.up_proj"], "weight", QuantSpec())
    assert cfg.resolve("layers.2.mlp.up_proj").weight == QuantSpec()
    assert cfg.resolve("layers.2.mlp.down_proj").weight == W4


def test_layers_group_by_numbered_block():
    top = group_layers(FQNS)
    assert top[0] == 0 and top[-1] == len(FQNS) - 1
    groups = top[1:-1]
    assert [g.label for g in groups] == [f"layers.{i}" for i in range(12)]
    assert [FQNS[i] for i in groups[3].members] == [f for f in FQNS if f.startswith("layers.3.")]
    assert groups[3].child_name("layers.3.self_attn.q_proj") == "self_attn.q_proj"
    assert block_of("model.layers.3.self_attn.q_proj") == "model.layers.3"
    assert block_of("features.0") is None  # the number is the layer itself
    # the digit samples have no blocks: flat
    assert group_layers(["conv1", "conv2", "fc1", "fc2"]) == [0, 1, 2, 3]
    # a Sequential's numbered layers and one-layer "blocks" stay flat too
    assert group_layers(["features.0", "features.3", "head.1.fc", "fc"]) == [0, 1, 2, 3]
    # model.layers.N is shown as layers.N; a label two blocks share shows the full key
    names = ["model.layers.0.q", "model.layers.0.k", "lm_head"]
    top = group_layers(names)
    assert top[0].label == "layers.0" and top[1] == 2
    names = ["encoder.layer.0.q", "encoder.layer.0.k", "decoder.layer.0.q", "decoder.layer.0.k"]
    assert [g.label for g in group_layers(names)] == ["encoder.layer.0", "decoder.layer.0"]


# -- property: any order of overrides resolves as "the last matching key wins" --------------
def _independent_match(key: str, name: str) -> bool:
    """Written here, apart from quantviz: exact name, fnmatch glob, or re: full match."""
    import fnmatch
    import re

    if key.startswith("re:"):
        return re.fullmatch(key[3:], name) is not None
    return key == name or fnmatch.fnmatchcase(name, key)


KEYS = [
    "*.mlp.*",
    "layers.3.*",
    r"re:layers\.\d+\.self_attn\.v_proj",
    r"re:layers\.1\d?\..*",
    "layers.?.mlp.up_proj",
    "lm_head",
    "layers.7.self_attn.q_proj",
    "*_proj",
]


@given(
    keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=len(KEYS), unique=True),
    bits=st.lists(st.integers(2, 8), min_size=len(KEYS), max_size=len(KEYS)),
    moves=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=5),
)
@settings(max_examples=60, deadline=None)
def test_any_order_resolves_to_the_last_matching_override(keys, bits, moves):
    cfg = ModelConfig()
    for k, b in zip(keys, bits, strict=False):
        cfg = set_pattern_spec(cfg, k, "weight", QuantSpec(bits=b))
    for src, dst in moves:
        cfg = move_override(cfg, keys[src % len(keys)], dst)
    order = [k for k, _ in cfg.overrides]
    assert sorted(order) == sorted(keys)  # moves never lose or add an override
    want = dict(zip(keys, bits, strict=False))
    for name in FQNS:
        last = [k for k in order if _independent_match(k, name)]
        got = cfg.resolve(name).weight.bits
        assert got == (want[last[-1]] if last else 8), (name, order)
    infos = override_info(cfg, FQNS)
    assert sum(i.decided for i in infos) == sum(
        1 for n in FQNS if any(_independent_match(k, n) for k in order)
    )
