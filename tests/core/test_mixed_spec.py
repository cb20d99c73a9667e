"""``--choices`` and ``--budget``: the schemes and budgets they name, and their errors."""

from __future__ import annotations

import pytest

from quantviz.core import QuantSpec
from quantviz.core.mixed_spec import Budget, parse_budget, parse_choices


def test_choices_name_their_specs():
    got = parse_choices("int4:g128, int8:pc,uint3:pt,nf4,fp8,mxfp4,nvfp4,mxfp8,float")
    assert [s.label for s in got] == [
        "int4:g128",
        "int8:pc",
        "uint3:pt",
        "nf4:pc",
        "fp8:pc",
        "mxfp4",
        "nvfp4",
        "mxfp8",
        "float",
    ]
    specs = [s.spec for s in got]
    assert specs[0] == QuantSpec(bits=4, granularity="per_group", group_size=128)
    assert specs[1] == QuantSpec(bits=8, granularity="per_channel")
    assert specs[2] == QuantSpec(bits=3, symmetric=False, granularity="per_tensor")
    assert specs[3] == QuantSpec(quantizer="nf4", granularity="per_channel")
    assert specs[4] == QuantSpec(quantizer="fp8_e4m3", granularity="per_channel")
    assert specs[5] == QuantSpec(quantizer="mxfp4")
    assert specs[6] == QuantSpec(quantizer="nvfp4")
    assert specs[7] == QuantSpec(quantizer="mxfp8_e4m3")
    assert specs[8] is None


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("", "give at least one scheme"),
        ("int4,,int8", "empty item"),
        ("int9", "int2..int8"),
        ("int4:g0", "granularity must be pt"),
        ("int4:x", "granularity must be pt"),
        ("mxfp4:g64", "own blocks of 32; drop ':g64'"),
        ("float:pc", "float takes no granularity"),
        ("bf16", "unknown scheme 'bf16'"),
        ("int4,int4:pc", "same scheme as 'int4'"),
    ],
)
def test_bad_choices_name_the_flag_and_item(text, msg):
    with pytest.raises(ValueError, match=r"^--choices: ") as info:
        parse_choices(text)
    assert msg in str(info.value)


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("0.25", Budget("fraction", 0.25, "0.25")),
        ("1", Budget("fraction", 1.0, "1")),
        ("4.5bpw", Budget("bpw", 4.5, "4.5bpw")),
        ("30kB", Budget("bytes", 30e3, "30kB")),
        ("3MB", Budget("bytes", 3e6, "3MB")),
        ("1.5GB", Budget("bytes", 1.5e9, "1.5GB")),
        ("512KiB", Budget("bytes", 512 * 1024, "512KiB")),
        ("1000B", Budget("bytes", 1000, "1000B")),
        ("2.5GBOPs", Budget("bops", 2.5e9, "2.5GBOPs")),
        ("1e9bops", Budget("bops", 1e9, "1e9bops")),
    ],
)
def test_budgets(text, budget):
    assert parse_budget(text) == budget


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("", "expected a fraction"),
        ("lots", "expected a fraction"),
        ("3XB", "expected a fraction"),
        ("0", "must be positive"),
        ("-1MB", "expected a fraction"),
        ("3", "a plain number is a fraction of the float model in (0, 1]"),
        ("100bpw", "bits per weight must be <= 64"),
    ],
)
def test_bad_budgets_name_the_flag_and_value(text, msg):
    with pytest.raises(ValueError, match=r"^--budget: ") as info:
        parse_budget(text)
    assert msg in str(info.value) and repr(text) in str(info.value)
