"""Bad input raises ValueError naming the problem; never a silent NaN result."""

import pytest
import torch

from quantviz.core import LayerConfig, ModelConfig, QuantSpec, fit_quantizer, quantize


@pytest.mark.parametrize(
    ("x", "spec", "match"),
    [
        (torch.tensor([1.0, float("nan")]), QuantSpec(), "NaN or inf"),
        (torch.tensor([1.0, float("inf")]), QuantSpec(), "NaN or inf"),
        (torch.tensor([[1.0, -float("inf")]]), QuantSpec(granularity="per_channel"), "NaN or inf"),
        (torch.tensor([1.0, float("nan")]), QuantSpec(quantizer="kmeans"), "NaN or inf"),
        (torch.tensor([[1.0, float("nan")]] * 3), QuantSpec(granularity="per_channel"), "NaN"),
        (
            torch.tensor([[float("nan")] * 5] * 3),
            QuantSpec(granularity="per_group", group_size=5),
            "NaN",
        ),
        (torch.empty(0), QuantSpec(), "empty"),
        (torch.empty(3, 0), QuantSpec(granularity="per_channel"), "empty"),
        (torch.arange(10), QuantSpec(), "not a floating-point"),
        (torch.ones(4, 6), QuantSpec(granularity="per_group", group_size=4), "group_size: 4"),
        (torch.ones(4, 6), QuantSpec(granularity="per_channel", axis=2), "axis: 2 is out of range"),
        (torch.ones(4, 6), QuantSpec(granularity="per_channel", axis=-3), "axis: -3"),
        (torch.tensor(1.0), QuantSpec(granularity="per_channel"), "at least one dimension"),
    ],
)
def test_bad_tensors(x, spec, match):
    with pytest.raises(ValueError, match=match):
        quantize(x, spec)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bits": 0}, r"bits: must be 1\.\.16, got 0"),
        ({"bits": 17}, r"bits: must be 1\.\.16, got 17"),
        ({"bits": 4.5}, "bits: must be an integer"),
        ({"bits": True}, "bits: must be an integer"),
        ({"quantizer": "lloyd"}, "quantizer: must be one of uniform, log2"),
        ({"granularity": "per_row"}, "granularity: must be one of"),
        ({"calibration": "entropy"}, "calibration: must be one of"),
        ({"group_size": 0}, "group_size: must be >= 1"),
        ({"percentile": 30}, r"percentile: must be in \(50, 100\]"),
        ({"percentile": "99"}, "percentile: must be a number"),
        ({"symmetric": 1}, "symmetric: must be true or false"),
        ({"symmetric": False, "restricted_range": True}, "restricted_range: only applies"),
        ({"quantizer": "log2", "bits": 1}, "log2 needs at least 2 bits"),
    ],
)
def test_bad_specs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantSpec(**kwargs)


def test_fixed_width_formats_set_their_bits():
    assert QuantSpec(quantizer="nf4", bits=8).bits == 4
    assert QuantSpec(quantizer="fp8_e5m2", bits=3).bits == 8
    assert QuantSpec(quantizer="fp4_e2m1").bits == 4


def test_non_tensor_and_non_spec():
    with pytest.raises(ValueError, match="expected a torch.Tensor"):
        quantize([1.0, 2.0], QuantSpec())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spec: expected a QuantSpec"):
        quantize(torch.ones(3), {"bits": 4})  # type: ignore[arg-type]


def test_fit_quantizer_errors():
    with pytest.raises(ValueError, match="exactly one"):
        fit_quantizer(QuantSpec())
    with pytest.raises(ValueError, match="per_tensor"):
        fit_quantizer(QuantSpec(granularity="per_channel"), values=torch.ones(4))
    with pytest.raises(ValueError, match="no samples"):
        fit_quantizer(QuantSpec(), histogram=([0, 0], [0.0, 1.0, 2.0]))


def test_from_dict_names_unknown_field():
    with pytest.raises(ValueError, match="bitz: unknown field"):
        QuantSpec.from_dict({"bitz": 4})


def test_model_config_validation_and_resolution():
    w4 = LayerConfig(weight=QuantSpec(bits=4))
    w2 = LayerConfig(weight=QuantSpec(bits=2))
    cfg = ModelConfig(overrides={"features.*": w4, "features.3": w2})
    assert cfg.resolve("features.0") == w4
    assert cfg.resolve("features.3") == w2  # last match wins
    assert cfg.resolve("classifier") == LayerConfig()
    assert cfg.matching("features.3") == ["features.*", "features.3"]
    moved = cfg.with_override("features.3", None).with_override("features.*", w4)
    assert moved.resolve("features.3") == w4
    assert cfg.unknown_keys(["classifier"]) == ["features.*", "features.3"]
    with pytest.raises(ValueError, match="layers.x: must be a LayerConfig"):
        ModelConfig(overrides={"x": QuantSpec()})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="weight: must be a QuantSpec"):
        LayerConfig(weight={"bits": 4})  # type: ignore[arg-type]


def test_fit_quantizer_from_values_and_histogram_agree():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100_000, generator=g)
    a = fit_quantizer(QuantSpec(bits=8, symmetric=False), values=x)
    counts, edges = torch.histogram(x, bins=4096)
    b = fit_quantizer(QuantSpec(bits=8, symmetric=False), histogram=(counts, edges))
    assert a.scale == pytest.approx(b.scale, rel=1e-4)
    y = a(x)
    assert torch.isin(y, a.levels).all()
    # applied with fixed params it equals torch's fake-quant with those params
    ref = torch.fake_quantize_per_tensor_affine(x, a.scale, a.zero_point, 0, 255)
    assert torch.equal(y, ref)
