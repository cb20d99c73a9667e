"""OCP MX v1.0 block formats and NVIDIA NVFP4 against a reference written here from the specs.

The reference builds each element grid from its bit layout (E4M3 from torch's
``float8_e4m3fn`` bit patterns), picks the scale with float64 ``log2`` and rounds by nearest
search over the grid with ties to the even code: none of it is quantviz's code path.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quantviz.core import QuantSpec, quantize
from quantviz.core.memory import bits_per_value
from quantviz.io.config import ConfigError, config_from_dict

MX = ("mxfp8_e4m3", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8")
ALL = (*MX, "nvfp4")


# -- the reference ---------------------------------------------------------------------------
def _minifloat_positive(e_bits: int, m_bits: int, bias: int) -> np.ndarray:
    """Non-negative values of a float format without inf/NaN, indexed by their bit code."""
    out = []
    for code in range(2 ** (e_bits + m_bits)):
        e, m = code >> m_bits, code & (2**m_bits - 1)
        if e == 0:
            out.append(m * 2.0 ** (1 - bias - m_bits))
        else:
            out.append((2**m_bits + m) * 2.0 ** (e - bias - m_bits))
    return np.array(out)


def _e4m3_positive() -> np.ndarray:
    v = torch.arange(0, 128, dtype=torch.uint8).view(torch.float8_e4m3fn).double().numpy()
    return v[np.isfinite(v)]  # code 0x7f is NaN


#: (positive grid indexed by code, emax of the element) per MX float format
GRIDS = {
    "mxfp8_e4m3": (_e4m3_positive(), 8),
    "mxfp6_e3m2": (_minifloat_positive(3, 2, 3), 4),
    "mxfp6_e2m3": (_minifloat_positive(2, 3, 1), 2),
    "mxfp4": (np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]), 2),
}


def _rne_to_grid(v: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Nearest value of the sign-symmetric grid ``±pos``; ties to the even code; saturating."""
    a = np.abs(v)
    d = np.abs(a[..., None] - pos[None, :])
    best = d.min(axis=-1, keepdims=True)
    cand = d == best
    codes = np.arange(pos.size)
    # among the (at most two) nearest, the even code
    even = cand & (codes % 2 == 0)
    pick = np.where(even.any(-1), even.argmax(-1), cand.argmax(-1))
    return np.sign(v) * pos[pick]


def ref_mx(x: np.ndarray, fmt: str) -> np.ndarray:
    """OCP MX v1.0 quantize-dequantize of the rows of ``x`` [n, 32k] in blocks of 32."""
    blocks = x.astype(np.float64).reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1)
    emax = 0 if fmt == "mxint8" else GRIDS[fmt][1]
    with np.errstate(divide="ignore"):
        e = np.where(amax > 0, np.floor(np.log2(amax)) - emax, -127)
    scale = 2.0 ** np.clip(e, -127, 127)
    v = blocks / scale[:, None]
    if fmt == "mxint8":
        q = np.clip(np.round(v * 64), -127, 127) / 64  # np.round: half to even
    else:
        q = _rne_to_grid(v, GRIDS[fmt][0])
    return (q * scale[:, None]).reshape(x.shape)


def ref_nvfp4(x: np.ndarray) -> np.ndarray:
    """NVFP4: FP32 tensor scale amax/(6*448), E4M3 block scales (RNE), E2M1 elements."""
    x32 = x.astype(np.float32)
    blocks = x32.reshape(-1, 16)
    amax = np.abs(blocks).max(axis=1)
    ts = np.float32(float(amax.max()) / (6 * 448)) if amax.max() > 0 else np.float32(1.0)
    e4m3 = _rne_to_grid(
        (amax / np.float32(np.float32(6.0) * ts)).astype(np.float64), _e4m3_positive()
    )
    scale = (e4m3.astype(np.float32) * ts).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    v = (blocks / safe[:, None]).astype(np.float32)
    q = _rne_to_grid(v.astype(np.float64), GRIDS["mxfp4"][0]).astype(np.float32)
    return (q * scale[:, None]).astype(np.float32).reshape(x.shape)


def reference(x: np.ndarray, fmt: str) -> np.ndarray:
    return ref_nvfp4(x) if fmt == "nvfp4" else ref_mx(x, fmt)


def ours(x: np.ndarray, fmt: str) -> np.ndarray:
    return quantize(
        torch.from_numpy(x.astype(np.float32)), QuantSpec(quantizer=fmt)
    ).dequantized.numpy()


# -- against the reference ------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ALL)
@pytest.mark.parametrize("dist", ["normal", "student_t", "wide"])
def test_matches_the_reference(fmt: str, dist: str) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{fmt}{dist}".encode()))
    if dist == "normal":
        x = rng.standard_normal((16, 128))
    elif dist == "student_t":
        x = rng.standard_t(3, (16, 128))
    else:  # blocks spread over many binades, some all zero
        x = rng.standard_normal((16, 128)) * 2.0 ** rng.integers(-30, 30, (16, 1))
        x[3] = 0.0
    x = x.astype(np.float32)
    np.testing.assert_array_equal(ours(x, fmt), reference(x, fmt).astype(np.float32))


def test_mxfp4_ties_go_to_even_and_values_saturate() -> None:
    # block amax 6 -> X = 2^(2 - 2) = 1: the elements are the values themselves
    row = np.zeros(32, dtype=np.float32)
    row[:8] = [6.0, 0.25, 0.75, 2.5, 5.0, -1.25, -3.5, 1.75]
    got = ours(row[None, :], "mxfp4")[0, :8]
    assert got.tolist() == [6.0, 0.0, 1.0, 2.0, 4.0, -1.0, -4.0, 2.0]
    row[0] = 7.9  # floor(log2 7.9) = 2: X = 1 still, and 7.9 saturates to 6
    assert ours(row[None, :], "mxfp4")[0, 0] == 6.0


def test_mx_scale_is_the_spec_power_of_two() -> None:
    x = torch.zeros(1, 64)
    x[0, 0] = 100.0  # floor(log2 100) = 6
    x[0, 32] = 0.3  # floor(log2 0.3) = -2
    for fmt, emax in (
        ("mxfp8_e4m3", 8),
        ("mxfp6_e3m2", 4),
        ("mxfp6_e2m3", 2),
        ("mxfp4", 2),
        ("mxint8", 0),
    ):
        r = quantize(x, QuantSpec(quantizer=fmt))
        assert r.scale.tolist() == [2.0 ** (6 - emax), 2.0 ** (-2 - emax)], fmt


def test_mxint8_grid_and_saturation() -> None:
    x = torch.zeros(1, 32)
    x[0, :4] = torch.tensor([1.999, -1.999, 1.0 / 128, 3.0 / 128])  # X = 1
    r = quantize(x, QuantSpec(quantizer="mxint8"))
    assert r.dequantized[0, :4].tolist() == [127 / 64, -127 / 64, 0.0, 2 / 64]
    assert r.levels.shape == (1, 255)  # codes -127..127 times X


def test_nvfp4_scales_follow_the_recipe() -> None:
    x = torch.zeros(1, 32)
    x[0, 0] = 12.0  # tensor amax: s = 12 / 2688
    x[0, 16] = 1.0  # block scale e4m3(1 / (6 s)) = e4m3(37.333) = 36
    r = quantize(x, QuantSpec(quantizer="nvfp4"))
    s = np.float32(12.0 / 2688)
    assert r.fitted.tensor_scale == pytest.approx(float(s), rel=0, abs=0)
    assert r.scale.tolist() == [float(np.float32(448 * s)), float(np.float32(36 * s))]


@pytest.mark.parametrize("fmt", ALL)
def test_nan_and_inf_are_refused(fmt: str) -> None:
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.randn(4, 32)
        x[2, 5] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            quantize(x, QuantSpec(quantizer=fmt))


def test_bits_per_value_are_exact() -> None:
    shape = (64, 128)
    assert bits_per_value(QuantSpec(quantizer="mxfp8_e4m3"), shape) == 8.25
    assert bits_per_value(QuantSpec(quantizer="mxint8"), shape) == 8.25
    assert bits_per_value(QuantSpec(quantizer="mxfp6_e3m2"), shape) == 6.25
    assert bits_per_value(QuantSpec(quantizer="mxfp6_e2m3"), shape) == 6.25
    assert bits_per_value(QuantSpec(quantizer="mxfp4"), shape) == 4.25
    # 4 bits + an 8-bit E4M3 scale per 16, plus the one FP32 tensor scale
    assert bits_per_value(QuantSpec(quantizer="nvfp4"), shape) == 4.5 + 32 / (64 * 128)
    r = quantize(torch.randn(shape), QuantSpec(quantizer="mxfp4"))
    assert r.bits_per_value == 4.25


# -- the spec's own granularity -------------------------------------------------------------
@pytest.mark.parametrize("fmt", ALL)
def test_spec_takes_the_formats_block(fmt: str) -> None:
    s = QuantSpec(quantizer=fmt)
    block = 16 if fmt == "nvfp4" else 32
    assert (s.granularity, s.group_size) == ("per_group", block)
    assert s == QuantSpec(quantizer=fmt, granularity="per_group", group_size=block)
    with pytest.raises(ValueError, match=r"^granularity: .*per_channel"):
        QuantSpec(quantizer=fmt, granularity="per_channel")
    with pytest.raises(ValueError, match=r"^group_size: .*blocks of"):
        QuantSpec(quantizer=fmt, granularity="per_group", group_size=64)
    with pytest.raises(ValueError, match=r"^calibration: "):
        QuantSpec(quantizer=fmt, calibration="mse")
    with pytest.raises(ValueError, match=r"^granularity: "):
        QuantSpec.from_dict({"quantizer": fmt, "granularity": "per_tensor"})
    assert QuantSpec.from_dict(s.to_dict()) == s


def test_row_not_a_multiple_of_the_block_is_refused() -> None:
    with pytest.raises(ValueError, match="group_size: 32 does not divide the row length 48"):
        quantize(torch.randn(4, 48), QuantSpec(quantizer="mxfp4"))


def test_config_files_accept_the_names() -> None:
    doc = {
        "format": "quantviz-config",
        "version": 2,
        "default": {"weight": {"bits": 4, "granularity": "per_channel", "calibration": "mse"}},
        "layers": {
            "fc1": {"weight": {"quantizer": "mxfp4"}},
            "fc2": {"weight": {"quantizer": "nvfp4"}},
            "fc3": {"weight": {"quantizer": "mxfp6_e2m3", "dynamic": False}},
        },
    }
    cfg = config_from_dict(doc)
    assert cfg.resolve("fc1").weight == QuantSpec(quantizer="mxfp4")
    assert cfg.resolve("fc2").weight == QuantSpec(quantizer="nvfp4")
    assert cfg.resolve("fc3").weight.quantizer == "mxfp6_e2m3"
    bad = {**doc, "layers": {"fc1": {"weight": {"quantizer": "mxint8", "group_size": 16}}}}
    with pytest.raises(ConfigError, match=r"layers\.fc1\.weight\.group_size: mxint8 uses blocks"):
        config_from_dict(bad)


# -- properties -----------------------------------------------------------------------------
_finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
_blocks = arrays(
    np.float32, st.tuples(st.integers(1, 4), st.sampled_from([32, 64])), elements=_finite
)


@settings(max_examples=25, deadline=None)
@given(x=_blocks, fmt=st.sampled_from(ALL))
def test_outputs_lie_on_their_blocks_grid(x: np.ndarray, fmt: str) -> None:
    r = quantize(torch.from_numpy(x), QuantSpec(quantizer=fmt))
    lv = r.levels.numpy()  # [blocks, L]
    out = r.dequantized.numpy().reshape(lv.shape[0], -1)
    for b in range(lv.shape[0]):
        assert np.isin(out[b], lv[b]).all()
    np.testing.assert_array_equal(r.dequantized.numpy(), reference(x, fmt).astype(np.float32))


@settings(max_examples=25, deadline=None)
@given(x=_blocks, fmt=st.sampled_from(MX))
def test_mx_is_idempotent(x: np.ndarray, fmt: str) -> None:
    once = quantize(torch.from_numpy(x), QuantSpec(quantizer=fmt)).dequantized
    twice = quantize(once, QuantSpec(quantizer=fmt)).dequantized
    assert torch.equal(once, twice)


@settings(max_examples=25, deadline=None)
@given(
    x=arrays(np.float32, (2, 64), elements=_finite),
    y=arrays(np.float32, (32,), elements=_finite),
    fmt=st.sampled_from(ALL),
)
def test_blocks_are_independent(x: np.ndarray, y: np.ndarray, fmt: str) -> None:
    """Changing one block leaves every other block's output alone (NVFP4: while the tensor's
    absolute maximum, hence its FP32 scale, stays the same)."""
    x2 = x.copy()
    if fmt == "nvfp4":
        y = y[:16]
        lim = float(np.abs(x).max())
        y = np.clip(y, -lim, lim)
        if np.abs(x[0, :16]).max() == lim:  # keep the tensor amax outside the changed block
            return
        x2[0, :16] = y
        other = np.ones_like(x, dtype=bool)
        other[0, :16] = False
    else:
        x2[0, :32] = y
        other = np.ones_like(x, dtype=bool)
        other[0, :32] = False
    a, b = ours(x, fmt), ours(x2, fmt)
    np.testing.assert_array_equal(a[other], b[other])


def test_torchao_mx_prototype_agrees_where_installed() -> None:
    mx = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")
    x = torch.randn(8, 64)
    ref = mx.MXTensor.to_mx(x, torch.float8_e4m3fn, 32).to_dtype(torch.float32)
    got = quantize(x, QuantSpec(quantizer="mxfp8_e4m3")).dequantized
    assert math.isclose(float((ref - got).abs().max()), 0.0, abs_tol=0.0)


def test_safetensors_export_round_trips_block_formats(tmp_path, capsys):
    """Codes and per-block scales written by ``quantviz export -f safetensors`` decode to
    exactly the fake-quantized weights (ONNX lists them as inexpressible)."""
    from quantviz.cli import main
    from quantviz.io import load_quantized
    from quantviz.model import load_model

    cfg = tmp_path / "mx.yaml"
    cfg.write_text(
        "format: quantviz-config\nversion: 2\n"
        "default: {weight: {bits: 8, granularity: per_channel}}\n"
        "layers: {fc1: {weight: {quantizer: nvfp4}}, fc2: {weight: {quantizer: mxfp6_e2m3}}}\n"
    )
    out = tmp_path / "w.safetensors"
    args = ["export", "-m", "sample:digits_cnn", "-c", str(cfg), "--no-progress"]
    assert main([*args, "-f", "safetensors", "-o", str(out)]) == 0
    h = load_model("sample:digits_cnn")
    got = load_quantized(out)
    for f, q in (("fc1", "nvfp4"), ("fc2", "mxfp6_e2m3")):
        want = quantize(h.weight(f), QuantSpec(quantizer=q)).dequantized
        assert torch.equal(got[f"{f}.weight"], want)
    pytest.importorskip("onnx")  # the export extra (not in the core-only environment)
    assert main([*args, "-f", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    shown = "".join(capsys.readouterr())
    assert "fc1: weight 4 nvfp4" in shown and "fc2: weight 6 mxfp6_e2m3" in shown
