"""Property test: ModelConfig -> file -> ModelConfig is exact, for JSON and YAML."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantviz.core.spec import (
    BLOCK_FORMATS,
    CALIBRATIONS,
    FIXED_WIDTH,
    GRANULARITIES,
    QUANTIZERS,
    LayerConfig,
    ModelConfig,
    QuantSpec,
)
from quantviz.io import ConfigError, config_from_dict, config_to_dict, load_config, save_config


@st.composite
def quant_specs(draw: st.DrawFn) -> QuantSpec:
    quantizer = draw(st.sampled_from(QUANTIZERS))
    symmetric = draw(st.booleans())
    restricted = symmetric and draw(st.booleans())
    min_bits = 2 if quantizer == "log2" or (quantizer == "uniform" and restricted) else 1
    bits = FIXED_WIDTH.get(quantizer) or draw(st.integers(min_bits, 16))
    if quantizer in BLOCK_FORMATS:  # their own granularity and scale rule
        return QuantSpec(quantizer=quantizer, symmetric=symmetric, dynamic=draw(st.booleans()))
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
# a key must name something (blank keys are refused) and "re:" keys must compile: see
# tests/test_override_edits.py for those
keys = fqns | globs | odd_keys | free_text.filter(lambda t: bool(t.strip()) and t[:3] != "re:")

model_configs = st.builds(
    ModelConfig,
    default=layer_configs,
    overrides=st.lists(st.tuples(keys, layer_configs), max_size=6, unique_by=lambda kv: kv[0]).map(
        tuple
    ),
    # blank models are written as null (readers refuse blank strings): see test_config_edges
    model=st.none()
    | st.sampled_from(["sample:digits_cnn", "m.pt2"])
    | free_text.filter(lambda t: bool(t.strip())),
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


# -- version 2 inheritance and the version-1 migration -----------------------------------------
def _v1_spec(spec):
    """How version 1 wrote a spec: the fields that differ from the QuantSpec defaults."""
    if spec is None:
        return None
    ref = QuantSpec()
    out = {
        f: getattr(spec, f)
        for f in spec.__dataclass_fields__
        if getattr(spec, f) != getattr(ref, f)
    }
    if spec.quantizer in FIXED_WIDTH:
        out.pop("bits", None)
    return out


def _v1_document(cfg: ModelConfig) -> dict:
    """A version-1 writer, written here from the version-1 rules (not the library's)."""
    d = cfg.default
    layers = {}
    for key, lc in cfg.overrides:
        entry = {}
        if lc.weight != d.weight:
            entry["weight"] = _v1_spec(lc.weight)
        if lc.activation != d.activation:
            entry["activation"] = _v1_spec(lc.activation)
        layers[key] = entry
    return {
        "format": "quantviz-config",
        "version": 1,
        "model": cfg.model,
        "default": {"weight": _v1_spec(d.weight), "activation": _v1_spec(d.activation)},
        "layers": layers,
    }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=model_configs)
def test_version_1_documents_keep_their_meaning(cfg):
    assert config_from_dict(_v1_document(cfg)) == cfg


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=model_configs)
def test_writer_is_minimal(cfg):
    """Every field written in a layer entry differs from the default's spec for it."""
    doc = config_to_dict(cfg)
    for key, entry in doc["layers"].items():
        lc = cfg.override_dict[key]
        for tensor, spec_doc in entry.items():
            base = getattr(cfg.default, tensor) or QuantSpec()
            spec = getattr(lc, tensor)
            assert spec != getattr(cfg.default, tensor)
            if spec_doc is None:
                continue
            for field, value in spec_doc.items():
                assert value == getattr(spec, field) != getattr(base, field)
            if spec.quantizer in FIXED_WIDTH:
                assert "bits" not in spec_doc


_FIELD_VALUES = {
    "bits": st.integers(2, 16),
    "quantizer": st.sampled_from(QUANTIZERS),
    "symmetric": st.booleans(),
    "granularity": st.sampled_from(GRANULARITIES),
    "axis": st.integers(-3, 3),
    "group_size": st.integers(1, 512),
    "calibration": st.sampled_from(CALIBRATIONS),
    "percentile": st.floats(50, 100, exclude_min=True, allow_nan=False),
    "dynamic": st.booleans(),
}


@settings(max_examples=300, deadline=None)
@given(
    default=maybe_specs,
    given_fields=st.fixed_dictionaries({}, optional=_FIELD_VALUES),
)
def test_a_layer_entry_is_the_default_except_its_fields(default, given_fields):
    """The documented rule, computed here with dataclass fields: base fields, then the given
    ones; a fixed-width format's bits are its width."""
    base = default if default is not None else QuantSpec()
    fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
    fields.update(given_fields)
    width = FIXED_WIDTH.get(fields["quantizer"])
    bad_bits = width is not None and given_fields.get("bits", width) != width
    if width is not None:
        fields["bits"] = width
    if fields["quantizer"] in BLOCK_FORMATS:  # granularity and calibration: the format's
        if "granularity" not in given_fields:
            fields["granularity"] = "per_group"
        if "group_size" not in given_fields:
            fields["group_size"] = BLOCK_FORMATS[fields["quantizer"]]
        if "calibration" not in given_fields:
            fields["calibration"] = "minmax"
    try:
        expected = QuantSpec(**fields)
    except ValueError:
        expected = None
    if fields["quantizer"] in BLOCK_FORMATS and given_fields.get("granularity") == "per_tensor":
        expected = None  # a file naming another granularity for a block format is refused
    if expected is None or bad_bits:
        with pytest.raises(ConfigError) as info:
            config_from_dict(_doc(default, given_fields))
        assert info.value.path.startswith("layers.x.weight.")
        if expected is not None:
            assert info.value.path == "layers.x.weight.bits" and "fixed width" in str(info.value)
        return
    cfg = config_from_dict(_doc(default, given_fields))
    assert cfg.resolve("x").weight == expected


def _doc(default, given_fields):
    return {
        "format": "quantviz-config",
        "version": 2,
        "default": {"weight": None if default is None else default.to_dict()},
        "layers": {"x": {"weight": dict(given_fields)}},
    }
