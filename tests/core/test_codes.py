"""quantize_codes / dequantize_codes: the integers a deployment format stores.

Decoding must give exactly ``quantize(x, spec).dequantized`` (bit for bit), the codes must
lie in the code range, and the uniform codes must be the integers torch itself stores for
the same scale / zero point: the ``quantized_decomposed`` ops of torch's PT2E quantization
(``torch.ao.quantization.fx._decomposed``, what torchao's ``quantize_affine`` also computes:
``clamp(round(x * (1 / scale)) + zero_point, quant_min, quant_max)``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quantviz.core import QuantSpec, quantize
from quantviz.core.codes import codes_of, dequantize_codes, quantize_codes
from quantviz.core.spec import FIXED_WIDTH


def _spec(draw, quantizer: str) -> QuantSpec:
    gran = draw(st.sampled_from(["per_tensor", "per_channel", "per_group"]))
    kw: dict = {"quantizer": quantizer, "granularity": gran, "group_size": 4}
    if quantizer in FIXED_WIDTH:
        kw["bits"] = FIXED_WIDTH[quantizer]
    elif quantizer == "uniform":
        kw["bits"] = draw(st.integers(1, 16))
        kw["symmetric"] = draw(st.booleans())
        if kw["symmetric"] and kw["bits"] >= 2:
            kw["restricted_range"] = draw(st.booleans())
        kw["calibration"] = draw(st.sampled_from(["minmax", "mse", "percentile"]))
    else:
        kw["bits"] = draw(st.integers(2, 5))
    if gran == "per_channel":
        kw["axis"] = draw(st.sampled_from([0, 1, -1]))
    return QuantSpec(**kw)


@st.composite
def cases(draw):
    quantizer = draw(
        st.sampled_from(["uniform", "uniform", "kmeans", "log2", "nf4", "fp8_e4m3", "fp4_e2m1"])
    )
    spec = _spec(draw, quantizer)
    shape = (draw(st.integers(1, 6)), 4 * draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * draw(st.sampled_from([1e-3, 0.1, 1.0, 30.0]))
    x += draw(st.sampled_from([0.0, 0.5]))
    dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float16, torch.bfloat16]))
    return x.to(dtype), spec


@settings(max_examples=150, deadline=None)
@given(cases())
def test_codes_decode_to_the_quantized_tensor_exactly(case):
    x, spec = case
    c = quantize_codes(x, spec)
    ref = quantize(x, spec).dequantized
    back = dequantize_codes(c)
    assert back.dtype == x.dtype and back.shape == x.shape
    assert torch.equal(back, ref)
    assert c.codes.dtype == torch.int64
    assert int(c.codes.min()) >= c.qmin and int(c.codes.max()) <= c.qmax
    assert c.codes.shape == (c.row_view.rows, c.row_view.row_len)
    # the codes fit the integer type code_bits names
    lo, hi = (
        (-(2 ** (c.code_bits - 1)), 2 ** (c.code_bits - 1) - 1)
        if c.signed
        else (0, 2**c.code_bits - 1)
    )
    assert lo <= c.qmin and c.qmax <= hi
    if spec.quantizer == "uniform":
        assert (c.qmin, c.qmax) == spec.qrange
        assert c.code_bits == spec.bits
    # the shaped view is the same codes in the tensor's (or the group matrix's) layout
    shaped = c.shaped()
    if spec.granularity == "per_group":
        assert shaped.shape == (x.shape[0], x.numel() // x.shape[0])
    else:
        assert shaped.shape == x.shape


def _decomposed():
    import torch.ao.quantization.fx._decomposed  # registers the ops

    return torch.ops.quantized_decomposed


@pytest.mark.parametrize("bits", [2, 4, 8, 12])
@pytest.mark.parametrize(("symmetric", "restricted"), [(True, False), (True, True), (False, False)])
@pytest.mark.parametrize("axis", [0, 1])
def test_uniform_codes_are_the_integers_torch_stores(bits, symmetric, restricted, axis):
    torch.manual_seed(bits + 10 * axis)
    w = torch.randn(12, 20) * torch.linspace(0.05, 3.0, 20) + 0.1
    spec = QuantSpec(
        bits=bits,
        symmetric=symmetric,
        restricted_range=restricted,
        granularity="per_channel",
        axis=axis,
    )
    c = quantize_codes(w, spec)
    qmin, qmax = spec.qrange
    dtype = torch.int16 if bits > 8 else (torch.int8 if symmetric else torch.uint8)
    if bits > 8 and not symmetric:
        dtype = torch.int32
    ref = _decomposed().quantize_per_channel(w, c.scale, c.zero_point, axis, qmin, qmax, dtype)
    assert torch.equal(c.shaped(), ref.to(torch.int64))


def test_per_tensor_codes_match_torch():
    torch.manual_seed(0)
    w = torch.randn(64, 16, 3, 3) * 0.2
    spec = QuantSpec(bits=8, symmetric=False)
    c = quantize_codes(w, spec)
    s, z = float(c.scale[0]), int(c.zero_point[0])
    ref = _decomposed().quantize_per_tensor(w, s, z, 0, 255, torch.uint8)
    assert torch.equal(c.shaped(), ref.to(torch.int64))
    assert c.params_shaped(c.scale).shape == ()


def test_per_group_layout_and_parameters():
    torch.manual_seed(1)
    w = torch.randn(6, 4, 2, 2)  # [C, K] view: [6, 16]
    spec = QuantSpec(bits=4, granularity="per_group", group_size=8)
    c = quantize_codes(w, spec)
    assert c.shaped().shape == (6, 16)
    assert c.params_shaped(c.scale).shape == (6, 2)
    # group (c, g) holds the columns g*8 .. g*8+7 of row c of the [C, K] view
    rows = w.reshape(6, 16)
    s = c.params_shaped(c.scale)
    for ch in range(6):
        for grp in range(2):
            vals = rows[ch, grp * 8 : (grp + 1) * 8]
            expect = torch.clamp(torch.round(vals * (1.0 / s[ch, grp])), -8, 7).to(torch.int64)
            assert torch.equal(c.shaped()[ch, grp * 8 : (grp + 1) * 8], expect)


def test_codebook_codes_index_sorted_levels():
    torch.manual_seed(2)
    w = torch.randn(8, 64)
    nf4 = quantize_codes(w, QuantSpec(quantizer="nf4", granularity="per_channel"))
    assert nf4.kind == "scaled_codebook" and (nf4.qmin, nf4.qmax) == (0, 15)
    assert nf4.levels is not None and nf4.levels.shape == (16,)
    km = quantize_codes(w, QuantSpec(quantizer="kmeans", bits=3, granularity="per_channel"))
    assert km.kind == "codebook" and km.levels is not None and km.levels.shape == (8, 8)
    assert np.all(np.diff(km.levels.numpy(), axis=1) >= 0)
    # the largest value of each row is coded by its row's top level
    top = km.codes.gather(1, w.argmax(1, keepdim=True))
    assert torch.equal(top.reshape(-1), torch.full((8,), 7))


def test_codes_of_reuses_a_result():
    w = torch.randn(4, 8)
    spec = QuantSpec(bits=6, granularity="per_channel")
    r = quantize(w, spec)
    assert torch.equal(codes_of(r, w).codes, quantize_codes(w, spec).codes)
    with pytest.raises(ValueError, match="NaN or inf"):
        quantize_codes(torch.tensor([1.0, float("nan")]), spec.with_(granularity="per_tensor"))
