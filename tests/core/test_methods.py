"""Method names of a per-method sweep (quantviz.core.methods): parse and label round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantviz.core.methods import METHOD_CHOICES, Method, parse_method, parse_methods
from quantviz.core.spec import ROUNDINGS, TRANSFORMS

methods = st.builds(
    lambda names, rounding: (names, rounding),
    st.lists(st.sampled_from(TRANSFORMS), unique=True, max_size=len(TRANSFORMS)),
    st.sampled_from(ROUNDINGS),
)


@given(methods)
def test_a_label_parses_back_to_its_method(m):
    names, rounding = m
    text = "+".join([*names, rounding])
    got = parse_method(text)
    assert [n for n, _ in got.transforms] == names and got.rounding == rounding
    assert parse_method(got.label) == got
    # the label omits nearest only when there are transforms
    assert got.label.endswith(rounding) or (rounding == "nearest" and names)


def test_every_choice_parses_and_duplicates_collapse():
    got = parse_methods(",".join(METHOD_CHOICES) + ",none,nearest")
    assert [m.label for m in got] == list(METHOD_CHOICES)
    assert parse_methods(["none"]) == (Method(),)
    with pytest.raises(ValueError, match=r"methods\[0\]: must be a method name"):
        parse_methods([""])


# --- parameters in brackets: smoothquant(alpha=0.8), cle(iterations=5)+bias_correction ---

alphas = st.floats(0.0, 1.0, allow_nan=False)
params = st.fixed_dictionaries(
    {},
    optional={
        "smoothquant": st.fixed_dictionaries({}, optional={"alpha": alphas}),
        "cle": st.fixed_dictionaries(
            {},
            optional={
                "iterations": st.integers(1, 10_000),
                "tolerance": st.floats(0.0, 1.0, allow_nan=False),
            },
        ),
    },
)


def written(name, given):
    """``name(k=v, ...)`` with repr values, or the bare name: written independently of the
    parser and of the label."""
    if not given:
        return name
    return name + "(" + ",".join(f"{k}={v!r}" for k, v in given.items()) + ")"


@given(params, st.sampled_from(ROUNDINGS))
def test_parameters_in_brackets_are_used_and_the_label_parses_back(given_params, rounding):
    names = ["cle", "smoothquant"]
    text = "+".join([*(written(n, given_params.get(n, {})) for n in names), rounding])
    got = parse_method(text)
    defaults = {"cle": {"iterations": 100, "tolerance": 1e-4}, "smoothquant": {"alpha": 0.5}}
    want = [(n, {**defaults[n], **given_params.get(n, {})}) for n in names]
    assert [(n, dict(p)) for n, p in got.transforms] == want and got.rounding == rounding
    assert parse_method(got.label) == got
    # the label shows exactly the parameters that differ from the defaults
    for n, p in want:
        for k, v in p.items():
            assert (f"{k}=" in got.label.split(n, 1)[1].split("+")[0]) == (v != defaults[n][k])
    assert parse_methods(f"nearest,{text},{got.label}") == (Method(), got)


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("nearest,smoothquant(alpha=0.8)", ["nearest", "smoothquant(alpha=0.8)"]),
        ("smoothquant(alpha=0.8)+gptq", ["smoothquant(alpha=0.8)+gptq"]),
        ("cle(iterations=5)+bias_correction", ["cle(iterations=5)+bias_correction"]),
        (
            "cle( iterations = 5 , tolerance=1e-3 ),gptq",
            ["cle(iterations=5, tolerance=0.001)", "gptq"],
        ),
        # equal after parsing: one method
        ("smoothquant,smoothquant(alpha=0.5),smoothquant(alpha=.5)", ["smoothquant"]),
        ("smoothquant(alpha=1),smoothquant(alpha=1.0)", ["smoothquant(alpha=1)"]),
        ("cle(),none", ["cle", "nearest"]),
    ],
)
def test_parameter_table(text, labels):
    assert [m.label for m in parse_methods(text)] == labels


def test_parameters_reach_the_transform_entries():
    (m,) = parse_methods("cle(iterations=5)+bias_correction")
    assert m.transforms == (
        ("cle", (("iterations", 5), ("tolerance", 1e-4))),
        ("bias_correction", ()),
    )
    assert m.params_dict() == [
        {"cle": {"iterations": 5, "tolerance": 1e-4}},
        {"bias_correction": {}},
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "nearest,hadamard(seed=1,foo=2)",
            r"--methods\[1\]: 'hadamard\(seed=1,foo=2\)': hadamard.seed: "
            r"unknown parameter \(known: none\)",
        ),
        ("smoothquant(beta=1)", r"smoothquant.beta: unknown parameter \(known: alpha\)"),
        (
            "smoothquant(alpha=2)",
            r"'smoothquant\(alpha=2\)': smoothquant.alpha: must be in \[0.0, 1.0\], got 2",
        ),
        ("smoothquant(alpha=-0.1)", r"smoothquant.alpha: must be in"),
        ("smoothquant(alpha=nan)", r"smoothquant.alpha: must be in"),
        ("smoothquant(alpha=high)", r"smoothquant.alpha: must be a number, got 'high'"),
        ("smoothquant(alpha)", r"smoothquant.alpha: must be NAME=NUMBER"),
        ("smoothquant(alpha=0.1,alpha=0.2)", r"smoothquant.alpha: given twice"),
        ("smoothquant(alpha=0.1,)", r"an empty parameter"),
        ("cle(iterations=2.5)", r"cle.iterations: must be an integer, got 2.5"),
        ("cle(iterations=0)", r"cle.iterations: must be in \[1, 10000\], got 0"),
        ("gptq(damp=0.1)", r"--methods\[0\]: 'gptq' in 'gptq\(damp=0.1\)' takes no parameters"),
        ("none(x=1)", r"'none' in 'none\(x=1\)' takes no parameters"),
        ("smoothquant(alpha=0.8", r"--methods: 'smoothquant\(alpha=0.8': a '\(' without its '\)'"),
        ("smoothquant)alpha=0.8(", r"a '\)' without its '\('"),
        ("smoothquant(alpha=0.8)x", r"is not NAME or NAME\(PARAMETER=NUMBER, ...\)"),
        ("fold_bn(x=1)", r"fold_bn.x: unknown parameter \(known: none\)"),
        ("smootquant(alpha=0.8)", r"'smootquant' in 'smootquant\(alpha=0.8\)' is neither"),
    ],
)
def test_bad_parameters_name_the_method_and_the_parameter(text, words):
    with pytest.raises(ValueError, match=words):
        parse_methods(text, "--methods")


def test_configured_parameters_fill_what_the_text_leaves_out():
    configured = (
        ("smoothquant", (("alpha", 0.8),)),
        ("cle", (("iterations", 7), ("tolerance", 0.01))),
    )
    got = parse_methods(
        "smoothquant,smoothquant(alpha=0.3)+gptq,cle(iterations=5)+bias_correction,hadamard",
        configured=configured,
    )
    assert [m.label for m in got] == [
        "smoothquant(alpha=0.8)",
        "smoothquant(alpha=0.3)+gptq",
        "cle(iterations=5, tolerance=0.01)+bias_correction",
        "hadamard",
    ]
    assert dict(got[2].transforms[0][1]) == {"iterations": 5, "tolerance": 0.01}
    # the labels name every parameter that differs from the default: they stand alone
    assert parse_methods([m.label for m in got]) == got
