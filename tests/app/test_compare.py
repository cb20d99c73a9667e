"""The compare view's Qt-free model (quantviz.app.compare): diff rows, per-config SQNR,
metrics and staleness, copy actions and bar heights, on the bundled sample; SQNR and sizes
checked against torch computed independently."""

from __future__ import annotations

import math

import pytest
import torch

from quantviz.app import AppController, Opened, run_job
from quantviz.app.compare import (
    CompareModel,
    LayerRow,
    bar_chart,
    compare_state,
    latest_entry,
    ops_text,
    scheme_text,
    sqnr_text,
)
from quantviz.core.defaults import DEFAULT_WEIGHT
from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec
from quantviz.session import ResultEntry, copy_layer, set_layer_spec

W4K = QuantSpec(bits=4, quantizer="kmeans", granularity="per_channel")


@pytest.fixture(scope="module")
def opened():
    ctl = AppController()
    run_job(ctl.open_model_job("sample:digits_cnn"))
    return ctl


@pytest.fixture
def ctl(opened):
    """A fresh controller on the sample with two configurations: ``default`` (W8 per
    channel) and ``w4k`` (the same with fc1 at W4 k-means per channel)."""
    c = AppController()
    s = opened.session
    c.adopt_model(Opened(s.handle, s.data_source, s.data))
    c.collecting_stats = False
    c.session.add_config("w4k", set_layer_spec(c.session.config, ["fc1"], "weight", W4K))
    return c


def _torch_sqnr_w8_per_channel(w: torch.Tensor) -> float:
    obs = torch.ao.quantization.PerChannelMinMaxObserver(
        ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric
    )
    obs(w)
    sc, zp = obs.calculate_qparams()
    fq = torch.fake_quantize_per_channel_affine(w, sc, zp.to(torch.int32), 0, -128, 127)
    return 10 * math.log10(float((w**2).sum()) / float(((fq - w) ** 2).sum()))


def test_texts():
    assert scheme_text(LayerConfig(weight=W4K)) == "W4 kmeans ch"
    assert scheme_text(LayerConfig(weight=None)) == "float"
    a8 = QuantSpec(bits=8, granularity="per_tensor")
    assert scheme_text(LayerConfig(weight=DEFAULT_WEIGHT, activation=a8)) == (
        f"W{DEFAULT_WEIGHT.short()} · A{a8.short()}"
    )
    assert [sqnr_text(v) for v in (None, math.inf, math.nan, 31.26)] == [
        "…",
        "∞ exact",
        "invalid",
        "31.3",
    ]
    assert sqnr_text(math.inf, kept_float=True) == "float"
    assert ops_text(999) == "999 BOPs" and ops_text(2.5e9) == "2.5 GBOPs"


def test_diff_rows_and_per_config_sqnr(ctl):
    s = ctl.session
    st = compare_state(ctl, ["default", "w4k"])
    assert st.names == ("default", "w4k")
    assert [r.fqn for r in st.layers] == s.fqns
    assert st.diff_rows == {"fc1"}
    fc1 = st.row("fc1")
    assert fc1.schemes == ("W8 sym ch", "W4 kmeans ch") and fc1.differs
    assert not st.row("conv1").differs
    assert fc1.sqnr == (None, None) and fc1.sqnr_texts == ("…", "…")  # not computed yet
    model = CompareModel(ctl)
    model.set_compared(["w4k", "default"])
    assert model.compared() == ["default", "w4k"]  # the session's order
    todo = model.sqnr_todo()
    # every layer at W8 ch, plus fc1 at W4 k-means: one spec per layer and config
    assert sorted(todo, key=str) == sorted(
        [(f, DEFAULT_WEIGHT) for f in s.fqns] + [("fc1", W4K)], key=str
    )
    run_job(ctl.sqnr_job(todo))
    assert model.sqnr_todo() == []
    st = model.state()
    fc1 = st.row("fc1")
    assert fc1.sqnr[0] == pytest.approx(_torch_sqnr_w8_per_channel(s.weight("fc1")), abs=1e-3)
    assert fc1.sqnr[1] < fc1.sqnr[0] - 10
    conv1 = st.row("conv1")
    assert conv1.sqnr[0] == conv1.sqnr[1]
    assert conv1.sqnr_texts[0] == f"{conv1.sqnr[0]:.1f}"
    # bar heights: the SQNR; a float layer gets no bar
    assert st.bars.fqns == tuple(s.fqns)
    assert st.bars.heights["w4k"] == tuple(r.sqnr[1] for r in st.layers)
    s.add_config("f", set_layer_spec(s.configs["w4k"], ["conv1"], "weight", None))
    st3 = compare_state(ctl, ["default", "w4k", "f"])
    i = s.fqns.index("conv1")
    assert st3.bars.heights["f"][i] == 0.0 and st3.row("conv1").sqnr_texts[2] == "float"
    assert st3.diff_rows == {"fc1", "conv1"}
    with pytest.raises(ValueError, match="no configuration named nope"):
        compare_state(ctl, ["default", "nope"])


def test_bar_heights_exact_invalid_unknown():
    rows = [
        LayerRow("a", (LayerConfig(weight=DEFAULT_WEIGHT),) * 2, (20.0, 40.0)),
        LayerRow("b", (LayerConfig(weight=DEFAULT_WEIGHT),) * 2, (math.inf, math.nan)),
        LayerRow("c", (LayerConfig(weight=DEFAULT_WEIGHT),) * 2, (None, -3.0)),
        LayerRow("d", (LayerConfig(weight=None),) * 2, (math.inf, math.inf)),
    ]
    chart = bar_chart(rows, ["x", "y"])
    assert chart.cap == pytest.approx(44.0)  # exact bars reach 1.1 x the largest SQNR
    assert chart.heights["x"] == (20.0, pytest.approx(44.0), 0.0, 0.0)
    assert chart.heights["y"] == (40.0, 0.0, -3.0, 0.0)
    assert chart.ymin == -3.0
    empty = bar_chart([LayerRow("a", (LayerConfig(weight=DEFAULT_WEIGHT),), (None,))], ["x"])
    assert empty.cap == pytest.approx(55.0) and empty.ymin == 0.0


def test_metrics_and_staleness_after_an_edit(ctl):
    s = ctl.session
    st = compare_state(ctl, ["default", "w4k"])
    m = st.metrics_of("default")
    assert m.entry is None and m.stale and not m.edited
    assert st.stale == ("default", "w4k")
    texts = m.texts()
    assert texts[:3] == ("default", "not evaluated", "")
    # size and compression are known without evaluating; float size from torch directly
    module = s.handle.module
    float_bytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    assert m.float_bytes == float_bytes
    assert m.compression == pytest.approx(float_bytes / m.size_bytes)
    assert 3.0 < m.compression < 4.0  # 8-bit weights, float32 scales and biases
    assert texts[4] == f"{m.compression:.2f}×"
    # k-means at 4 bits is smaller still
    assert st.metrics_of("w4k").size_bytes < m.size_bytes

    entry = run_job(ctl.evaluate_job("default"))
    m = compare_state(ctl, ["default", "w4k"]).metrics_of("default")
    assert m.entry is entry and not m.stale and m.tooltip() == ""
    r = entry.result
    assert m.value == r.value and m.drop == pytest.approx(r.baseline - r.value)
    assert m.bops == r.bops and m.bops > 0
    name, metric, drop, _, _, bops = m.texts()
    assert name == "default"
    assert metric == f"{r.metric.replace('_', ' ')} {r.value:.4f}"
    assert drop == f"{r.baseline - r.value:+.4f}" and bops.endswith("BOPs")
    assert compare_state(ctl, ["default", "w4k"]).stale == ("w4k",)

    # an edit after the evaluation: the numbers are stale until re-evaluated ...
    evaluated = s.configs["default"]
    s.replace_config("default", set_layer_spec(evaluated, ["fc2"], "weight", None))
    m = compare_state(ctl, ["default", "w4k"]).metrics_of("default")
    assert m.entry is entry and m.edited and m.stale
    assert m.texts()[1].endswith("(stale: edited since)")
    assert "edited since" in m.tooltip()
    assert compare_state(ctl, ["default", "w4k"]).stale == ("default", "w4k")
    # ... and undoing the edit makes them current again
    s.replace_config("default", evaluated)
    assert not compare_state(ctl, ["default"]).metrics_of("default").stale


def test_latest_entry_prefers_plain_evaluations():
    cfg = ModelConfig()
    e1 = ResultEntry("a", cfg, 1)
    sweep = ResultEntry("a", cfg, 2, series="uniform sweep")
    assert latest_entry([e1, sweep]) is e1
    assert latest_entry([sweep]) is sweep
    assert latest_entry([]) is None


def test_copy_actions_follow_the_differences(ctl):
    s = ctl.session
    model = CompareModel(ctl)
    model.set_compared(["default", "w4k"])
    assert [a.text for a in model.copy_actions("fc1")] == [
        "Copy fc1 from default to w4k",
        "Copy fc1 from w4k to default",
    ]
    assert model.copy_actions("conv1") == []
    assert model.can_copy("fc1", "w4k", "default")
    assert not model.can_copy("conv1", "w4k", "default")
    assert not model.can_copy("fc1", "w4k", "w4k") and not model.can_copy(None, "a", "b")
    with pytest.raises(ValueError, match="no quantizable layer named 'nope'"):
        model.copy_actions("nope")
    a = model.copy_actions("fc1")[1]
    s.replace_config(a.target, copy_layer(s.configs[a.source], s.configs[a.target], [a.fqn]))
    assert s.configs["default"].resolve("fc1").weight == W4K
    assert model.copy_actions("fc1") == [] and model.state().diff_rows == frozenset()


def test_the_compared_choice_follows_the_session(ctl):
    s = ctl.session
    model = CompareModel(ctl)
    assert model.compared() == []
    model.sync()  # an empty choice: the current configuration and the next two
    assert model.compared() == ["default", "w4k"]
    for n in ("b", "c"):
        s.add_config(n, s.config)
    model.reset()
    assert model.compared() == ["default", "w4k", "b"]
    model.set_checked("c", True)
    model.set_checked("default", False)
    assert model.compared() == ["w4k", "b", "c"]
    with pytest.raises(ValueError, match="no configuration named x, y"):
        model.set_compared(["b", "x", "y"])
    assert model.compared() == ["w4k", "b", "c"]  # unchanged
    s.delete("b")
    model.sync()
    assert model.compared() == ["w4k", "c"]
    assert model.layer_specs("fc1") == [("w4k", W4K), ("c", DEFAULT_WEIGHT)]
