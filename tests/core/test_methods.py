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
