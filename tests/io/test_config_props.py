"""Property test: ModelConfig -> file -> ModelConfig is exact, for JSON and YAML."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantviz.core.spec import (
    CALIBRATIONS,
    FIXED_WIDTH,
    GRANULARITIES,
    QUANTIZERS,
    LayerConfig,
    ModelConfig,
    QuantSpec,
)
from quantviz.io import config_from_dict, config_to_dict, load_config, save_config


@st.composite
def quant_specs(draw: st.DrawFn) -> QuantSpec:
    quantizer = draw(st.sampled_from(QUANTIZERS))
    symmetric = draw(st.booleans())
    restricted = symmetric and draw(st.booleans())
    min_bits = 2 if quantizer == "log2" or (quantizer == "uniform" and restricted) else 1
    bits = FIXED_WIDTH.get(quantizer) or draw(st.integers(min_bits, 16))
    return QuantSpec(
        bits=bits,
        quantizer=quantizer,
        symmetric=symmetric,
        restricted_range=restricted,
        granularity=draw(st.sampled_from(GRANULARITIES)),
        axis=draw(st.integers(-4, 4)),
        group_size=draw(st.sampled_from([1, 16, 32, 64, 128, 256]) | st.integers(1, 10_000)),
        calibration=draw(st.sampled_from(CALIBRATIONS)),
        percentile=draw(
            st.sampled_from([99.99, 100.0, 99.9])
            | st.floats(50, 100, exclude_min=True, allow_nan=False)
        ),
        dynamic=draw(st.booleans()),
    )


maybe_specs = st.none() | quant_specs()
layer_configs = st.builds(LayerConfig, weight=maybe_specs, activation=maybe_specs)

_ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_part = _ident | st.integers(0, 20).map(str)
fqns = st.lists(_part, min_size=1, max_size=4).map(".".join)
globs = st.builds(
    lambda head, tail: f"{head}.{tail}",
    fqns,
    st.sampled_from(["*", "?", "[0-3]", "*.conv?", "[!a]*"]),
)
# Keys a YAML writer must quote, and arbitrary (non-surrogate) text.
odd_keys = st.sampled_from(["0", "yes", "no", "null", "~", "1.5", "- a", "a: b", "#x", " sp "])
# YAML treats NEL / LS / PS as line breaks and BOM / tab / quotes specially: draw them often.
_tricky = st.sampled_from(list("\x85\u2028\u2029\ufeff\t\r\n\x00 '\"\\:#-?*&!|>%@`"))
free_text = st.text(_tricky | st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
keys = fqns | globs | odd_keys | free_text

model_configs = st.builds(
    ModelConfig,
    default=layer_configs,
    overrides=st.lists(st.tuples(keys, layer_configs), max_size=6, unique_by=lambda kv: kv[0]).map(
        tuple
    ),
    model=st.none() | st.sampled_from(["sample:digits_cnn", "m.pt2"]) | free_text,
)


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    return tmp_path_factory.mktemp("roundtrip")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=model_configs)
def test_dict_round_trip(cfg):
    assert config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=model_configs)
def test_file_round_trip(outdir, suffix, cfg):
    path = outdir / f"cfg{suffix}"
    save_config(cfg, path)
    back = load_config(path)
    assert back == cfg
    assert [k for k, _ in back.overrides] == [k for k, _ in cfg.overrides]
