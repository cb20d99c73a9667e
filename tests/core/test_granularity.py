"""Granularity types: their scale shapes against what quantize() fits, the flat file form."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quantviz.core import QuantSpec, quantize
from quantviz.core.granularity import PerAxis, PerGroup, PerTensor, granularity_of
from quantviz.io.config import config_from_dict, config_to_dict


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
    kind=st.sampled_from(["tensor", "axis", "group"]),
    data=st.data(),
)
def test_scale_shape_is_what_quantize_fits(shape, kind, data):
    row = 1
    for s in shape[1:]:
        row *= s
    if kind == "tensor":
        g = PerTensor()
    elif kind == "axis":
        g = PerAxis(data.draw(st.integers(-len(shape), len(shape) - 1)))
    else:
        g = PerGroup(data.draw(st.sampled_from([d for d in range(1, row + 1) if row % d == 0])))
    spec = QuantSpec(bits=4, granularity=g)
    assert spec.granularity_type == g
    r = quantize(torch.randn(shape), spec)
    want = () if kind == "tensor" else g.scale_shape(shape)
    assert tuple(r.scale.shape) == want
    assert g.groups(shape) == (1 if kind == "tensor" else r.scale.numel())


def test_typed_and_flat_specs_are_one_spec_and_the_file_keeps_the_flat_form():
    assert QuantSpec(granularity=PerAxis(1)) == QuantSpec(granularity="per_channel", axis=1)
    assert QuantSpec(granularity=PerGroup(32)) == QuantSpec(granularity="per_group", group_size=32)
    assert granularity_of("per_group", group_size=64) == PerGroup(64)
    from quantviz.core.spec import LayerConfig, ModelConfig

    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(granularity=PerAxis(1))))
    doc = config_to_dict(cfg)
    assert doc["default"]["weight"]["granularity"] == "per_channel"
    assert config_from_dict(doc) == cfg


def test_bad_values_name_the_field():
    with pytest.raises(ValueError, match="group_size: 5 does not divide the row length 9"):
        PerGroup(5).groups((16, 1, 3, 3))
    with pytest.raises(ValueError, match="axis: 3 is out of range"):
        PerAxis(3).groups((4, 4))
    with pytest.raises(ValueError, match="group_size: must be a positive integer"):
        PerGroup(0)
    with pytest.raises(ValueError, match="granularity: must be one of"):
        granularity_of("per_row")


def test_group_sizes_that_fit_every_row():
    from quantviz.core.granularity import fitting_group_size, group_sizes

    assert group_sizes([9]) == [1, 3, 9]
    assert group_sizes([27, 18]) == [1, 3, 9]
    assert fitting_group_size([27, 18]) == 9
    assert fitting_group_size([4096, 1024]) == 128
    assert fitting_group_size([]) == 128
    for n in (9, 27, 576):  # what PerGroup accepts
        PerGroup(fitting_group_size([n])).groups((4, n))
