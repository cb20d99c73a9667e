"""quantviz.core.memory: bits, bytes and BOPs, checked against hand-computed numbers."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from quantviz.core.memory import (
    bits_per_value,
    bops,
    float_model_bytes,
    layer_bytes,
    model_bytes,
    num_scale_groups,
    tensor_bits,
    tensor_bytes,
)
from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec


@dataclass(frozen=True)
class FakeLayer:
    """Duck-typed stand-in with exactly the four attributes memory.py promises to use."""

    fqn: str
    weight_shape: tuple[int, ...]
    params: int
    macs: int


# -- bits per value ---------------------------------------------------------------------------
def test_float_is_32_bits():
    assert bits_per_value(None, (64, 64)) == 32.0
    assert tensor_bits(None, (3, 5)) == 15 * 32


def test_asymmetric_per_channel_uniform():
    spec = QuantSpec(bits=4, symmetric=False, granularity="per_channel")
    expected_bits = 4096 * 4 + 64 * (32 + 4)
    assert tensor_bits(spec, (64, 64)) == expected_bits
    assert bits_per_value(spec, (64, 64)) == expected_bits / 4096 == 4.5625
    assert tensor_bytes(spec, (64, 64)) == expected_bits / 8 == 2336.0


def test_symmetric_per_tensor_uniform_has_no_zero_point():
    spec = QuantSpec(bits=8)
    assert tensor_bits(spec, (10, 10)) == 100 * 8 + 32
    assert bits_per_value(spec, (10, 10)) == pytest.approx(8.32)


def test_per_channel_along_other_axis():
    spec = QuantSpec(bits=8, granularity="per_channel", axis=1)
    assert tensor_bits(spec, (16, 3, 3, 3)) == 432 * 8 + 3 * 32
    spec = spec.with_(axis=-1, symmetric=False)
    assert tensor_bits(spec, (16, 3, 3, 5)) == 720 * 8 + 5 * (32 + 8)


def test_per_group_uses_gemm_view_of_conv_kernel():
    # [32, 16, 3, 3] is viewed as [32, 144]; groups of 48 -> 3 per row, 96 groups.
    spec = QuantSpec(bits=4, granularity="per_group", group_size=48)
    assert num_scale_groups(spec, (32, 16, 3, 3)) == 96
    assert tensor_bits(spec, (32, 16, 3, 3)) == 4608 * 4 + 96 * 32


def test_per_group_1d_tensor_is_a_column():
    # [n] is viewed as [n, 1], as quantize() does: only group_size=1 fits.
    assert num_scale_groups(QuantSpec(granularity="per_group", group_size=1), (128,)) == 128
    with pytest.raises(ValueError, match=r"row length 1 \(per_group views shape \[128\]"):
        num_scale_groups(QuantSpec(granularity="per_group", group_size=32), (128,))


def test_kmeans_codebook_is_fp16_per_group():
    spec = QuantSpec(bits=3, quantizer="kmeans")
    assert tensor_bits(spec, (100, 10)) == 1000 * 3 + 8 * 16
    per_ch = spec.with_(granularity="per_channel")
    assert tensor_bits(per_ch, (100, 10)) == 1000 * 3 + 100 * 8 * 16
    # A 16-bit codebook per channel costs more than the float weights: honest, not clipped.
    big = QuantSpec(bits=16, quantizer="kmeans", granularity="per_channel")
    assert bits_per_value(big, (4, 64)) == 16 + 4 * 65536 * 16 / 256


@pytest.mark.parametrize(
    ("quantizer", "code_bits"),
    [("log2", 5), ("fp8_e4m3", 8), ("fp8_e5m2", 8), ("fp4_e2m1", 4), ("nf4", 4)],
)
def test_scaled_formats_store_one_float32_per_group(quantizer, code_bits):
    spec = QuantSpec(bits=5, quantizer=quantizer, granularity="per_group", group_size=64)
    assert tensor_bits(spec, (8, 128)) == 1024 * code_bits + 16 * 32
    assert bits_per_value(spec, (8, 128)) == code_bits + 0.5


def test_asymmetric_zero_point_only_for_uniform():
    # log2 ignores `symmetric`: no zero point.
    sym = QuantSpec(bits=4, quantizer="log2")
    asym = QuantSpec(bits=4, quantizer="log2", symmetric=False)
    assert tensor_bits(sym, (8, 8)) == tensor_bits(asym, (8, 8)) == 64 * 4 + 32


def test_scalar_tensor():
    assert tensor_bits(QuantSpec(bits=8), ()) == 8 + 32


@pytest.mark.parametrize(
    ("spec", "shape", "message"),
    [
        (
            QuantSpec(granularity="per_group", group_size=128),
            (4, 100),
            r"group_size: 128 does not divide the row length 100",
        ),
        (
            QuantSpec(granularity="per_group", group_size=3),
            (16, 2, 2),
            r"row length 4 \(per_group views shape \[16, 2, 2\] as \[16, 4\]\)",
        ),
        (
            QuantSpec(granularity="per_channel", axis=2),
            (4, 4),
            r"axis: 2 is out of range for a 2-D tensor \[4, 4\]",
        ),
        (QuantSpec(granularity="per_channel", axis=-3), (4, 4), r"axis: -3 is out of range"),
        (QuantSpec(), (0, 4), r"shape: the tensor is empty"),
        (QuantSpec(), (4, -1), r"shape: must be a tuple of non-negative ints"),
        (QuantSpec(), (4, 2.0), r"shape: must be a tuple of non-negative ints"),
        (None, (0,), r"shape: the tensor is empty"),
        (QuantSpec(granularity="per_channel"), (), r"granularity: per_channel needs a tensor with"),
        (QuantSpec(granularity="per_group", group_size=1), (), r"granularity: per_group needs"),
    ],
)
def test_bad_shapes_and_specs(spec, shape, message):
    with pytest.raises(ValueError, match=message):
        bits_per_value(spec, shape)


def test_not_a_spec():
    with pytest.raises(ValueError, match="spec: must be a QuantSpec or None, got dict"):
        tensor_bits({"bits": 4}, (4, 4))  # type: ignore[arg-type]


def test_tensor_bytes_float_width():
    assert tensor_bytes(None, (10, 10)) == 400.0
    assert tensor_bytes(None, (10, 10), float_bytes_per_value=2) == 200.0


# -- layers and models ------------------------------------------------------------------------
CONV = FakeLayer("conv1", (8, 1, 3, 3), params=72 + 8, macs=72 * 36)
FC = FakeLayer("fc", (10, 64), params=640 + 10, macs=640)
NOBIAS = FakeLayer("proj", (64, 64), params=4096, macs=4096)
LAYERS = [CONV, FC, NOBIAS]


def test_layer_bytes_counts_bias_as_float():
    cfg = LayerConfig(weight=QuantSpec(bits=4, symmetric=False, granularity="per_channel"))
    assert layer_bytes(NOBIAS, cfg) == 2336.0
    assert layer_bytes(FC, cfg) == (640 * 4 + 10 * (32 + 4)) / 8 + 10 * 4
    assert layer_bytes(FC, cfg, bias_bytes=2) == (640 * 4 + 10 * 36) / 8 + 10 * 2
    # Activation specs cost no storage; a float weight keeps its dtype width.
    assert layer_bytes(FC, LayerConfig(weight=None, activation=QuantSpec())) == 650 * 4
    assert layer_bytes(FC, LayerConfig(weight=None), weight_dtype_bytes=2) == 650 * 2


def test_layer_bytes_errors_name_the_layer():
    cfg = LayerConfig(weight=QuantSpec(granularity="per_group", group_size=7))
    with pytest.raises(ValueError, match=r"^fc: weight group_size: 7 does not divide"):
        layer_bytes(FC, cfg)
    broken = FakeLayer("odd", (4, 4), params=3, macs=0)
    with pytest.raises(ValueError, match=r"^odd: params \(3\) is less than"):
        layer_bytes(broken, LayerConfig())
    with pytest.raises(ValueError, match="fc: cfg must be a LayerConfig"):
        layer_bytes(FC, QuantSpec())  # type: ignore[arg-type]


def test_model_bytes_resolves_overrides_and_adds_other_bytes():
    cfg = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=8)),
        overrides=(
            ("*", LayerConfig(weight=QuantSpec(bits=8, granularity="per_channel"))),
            ("conv1", LayerConfig(weight=None)),  # last match wins
        ),
    )
    conv = 80 * 4
    fc = (640 * 8 + 10 * 32) / 8 + 10 * 4
    proj = (4096 * 8 + 64 * 32) / 8
    assert model_bytes(LAYERS, cfg) == conv + fc + proj
    assert model_bytes(LAYERS, cfg, other_bytes=100) == conv + fc + proj + 100


def test_float_model_bytes_matches_float_config_and_params():
    total_params = sum(lay.params for lay in LAYERS)
    assert float_model_bytes(LAYERS) == total_params * 4
    assert float_model_bytes(LAYERS, other_bytes=12) == total_params * 4 + 12
    assert float_model_bytes(LAYERS, weight_dtype_bytes=2) == total_params * 2
    float_cfg = ModelConfig(default=LayerConfig(weight=None))
    assert model_bytes(LAYERS, float_cfg) == float_model_bytes(LAYERS)


def test_model_bytes_bad_arguments():
    with pytest.raises(ValueError, match="config: must be a ModelConfig"):
        model_bytes(LAYERS, LayerConfig())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="other_bytes: must be >= 0"):
        model_bytes(LAYERS, ModelConfig(), other_bytes=-1)


def test_bops():
    cfg = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=4), activation=QuantSpec(bits=8)),
        overrides=(
            ("fc", LayerConfig(weight=QuantSpec(quantizer="nf4"), activation=None)),
            ("proj", LayerConfig(weight=None, activation=None)),
        ),
    )
    expected = CONV.macs * 4 * 8 + FC.macs * 4 * 32 + NOBIAS.macs * 32 * 32
    assert bops(LAYERS, cfg) == expected
    assert isinstance(bops(LAYERS, cfg), int)
    float_cfg = ModelConfig(default=LayerConfig(weight=None))
    assert bops(LAYERS, float_cfg) == sum(lay.macs for lay in LAYERS) * 1024
    with pytest.raises(ValueError, match="bad: macs must be >= 0"):
        bops([FakeLayer("bad", (2, 2), 4, -1)], cfg)


def test_works_with_the_real_layerinfo():
    from quantviz.model.handle import LayerInfo

    lay = LayerInfo(fqn="fc", kind="linear", weight_shape=(10, 64), params=650, macs=640, bias=True)
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=8), activation=QuantSpec(bits=8)))
    assert model_bytes([lay], cfg) == (640 * 8 + 32) / 8 + 40
    assert bops([lay], cfg) == 640 * 64


def test_memory_does_not_import_model_or_qt_at_runtime():
    code = (
        "import sys, quantviz.core.memory as m; "
        "bad = [k for k in sys.modules if k.startswith(('quantviz.model', 'quantviz.io', "
        "'PySide6', 'pyqtgraph'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("shape", "spec"),
    [
        ((64, 64), QuantSpec(bits=4, symmetric=False, granularity="per_channel")),
        ((16, 3, 3, 3), QuantSpec(bits=3, quantizer="kmeans", granularity="per_channel")),
        ((8, 256), QuantSpec(quantizer="nf4", granularity="per_group", group_size=64)),
        ((8, 4, 3), QuantSpec(bits=5, quantizer="log2", granularity="per_channel", axis=-1)),
        ((32,), QuantSpec(quantizer="fp8_e4m3", granularity="per_group", group_size=1)),
    ],
)
def test_group_count_matches_what_quantize_produces(shape, spec):
    import torch

    from quantviz.core import quantize

    r = quantize(torch.randn(shape, generator=torch.Generator().manual_seed(0)), spec)
    assert r.levels.shape[0] == num_scale_groups(spec, shape)
    assert r.bits_per_value == bits_per_value(spec, shape)
