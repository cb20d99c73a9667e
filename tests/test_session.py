"""The Qt-free application state (quantviz.session): edits, named configs, results, events."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec
from quantviz.model.handle import LayerInfo, ModelHandle
from quantviz.session import (
    DEFAULT_CONFIG,
    Session,
    apply_to_all,
    copy_layer,
    reset_layers,
    set_layer_spec,
)


@pytest.fixture
def handle():
    torch.manual_seed(0)
    mod = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 4))
    layers = [
        LayerInfo("0", "linear", (16, 8), 16 * 8 + 16, bias=True, param="0.weight"),
        LayerInfo("1", "linear", (4, 16), 4 * 16 + 4, bias=True, param="1.weight"),
    ]
    return ModelHandle("test", "net", mod, layers, torch.zeros(1, 8), default_data=None)


@pytest.fixture
def session(handle):
    s = Session()
    s.set_model(handle, "data.npz")
    return s


class Recorder:
    def __init__(self, *signals):
        self.events = []
        for sig in signals:
            sig.connect(lambda *a, _n=sig.name: self.events.append((_n, a)))

    def names(self):
        return [n for n, _ in self.events]


def test_no_qt_imported():
    code = (
        "import sys, quantviz.session; "
        "print(sorted(m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'superqt'))))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "[]"


def test_set_model_resets_everything_and_emits(handle):
    s = Session()
    rec = Recorder(s.model_changed, s.config_changed, s.configs_changed, s.selection_changed)
    s.set_model(handle)
    assert s.handle is handle
    assert s.config_names == ["default"]
    assert s.config.default == DEFAULT_CONFIG.default
    assert s.config.model == "test"
    assert {"model_changed", "config_changed", "configs_changed"} <= set(rec.names())


def test_set_layer_spec_marks_changed_and_emits(session):
    rec = Recorder(session.config_changed)
    spec4 = QuantSpec(bits=4, quantizer="kmeans")
    session.set_layer_spec(["0"], "weight", spec4)
    assert session.layer_config("0").weight == spec4
    assert session.layer_config("1").weight == DEFAULT_CONFIG.default.weight
    assert session.is_changed("0") and not session.is_changed("1")
    assert rec.names() == ["config_changed"]
    # setting it back to the default removes the override
    session.set_layer_spec(["0"], "weight", DEFAULT_CONFIG.default.weight)
    assert session.config.overrides == ()
    assert not session.is_changed("0")


def test_same_config_does_not_emit(session):
    rec = Recorder(session.config_changed)
    session.set_layer_spec(["0"], "weight", DEFAULT_CONFIG.default.weight)
    assert rec.events == []


def test_keep_float_and_activation_side(session):
    session.set_layer_spec(["1"], "weight", None)
    session.set_layer_spec(["1"], "activation", QuantSpec(bits=8))
    lc = session.layer_config("1")
    assert lc.weight is None and lc.activation == QuantSpec(bits=8)


def test_apply_to_all_and_reset(session):
    session.set_layer_spec(["0"], "weight", QuantSpec(bits=3))
    session.apply_to_all("weight", QuantSpec(bits=6))
    assert all(session.layer_config(f).weight.bits == 6 for f in session.fqns)
    assert session.config.overrides == ()
    session.set_layer_spec(["0", "1"], "weight", QuantSpec(bits=2))
    session.reset_layers(["0"])
    assert session.layer_config("0").weight.bits == 6
    assert session.layer_config("1").weight.bits == 2


def test_pure_edits_respect_glob_overrides():
    cfg = ModelConfig(overrides=(("fc*", LayerConfig(weight=QuantSpec(bits=4))),))
    # an explicit default for one layer under a glob must stay, or the glob would win again
    out = set_layer_spec(cfg, ["fc1"], "weight", QuantSpec())
    assert out.resolve("fc1").weight == QuantSpec()
    assert out.resolve("fc2").weight.bits == 4
    assert reset_layers(out, ["fc1"]).resolve("fc1").weight.bits == 4
    assert apply_to_all(out, "weight", None).resolve("fc2").weight is None


def test_bad_input_names_the_problem(session):
    with pytest.raises(ValueError, match="side"):
        session.set_layer_spec(["0"], "bias", QuantSpec())
    with pytest.raises(ValueError, match="nope"):
        session.set_layer_spec(["nope"], "weight", QuantSpec())
    with pytest.raises(ValueError, match="spec"):
        session.set_layer_spec(["0"], "weight", {"bits": 4})
    with pytest.raises(ValueError, match="config"):
        session.set_config("not a config")


def test_named_configs_lifecycle(session):
    rec = Recorder(session.configs_changed, session.current_name_changed)
    assert session.save_as("w4") == "w4"
    # a snapshot: the current configuration stays current, later edits leave the copy alone
    assert session.current_name == "default"
    session.set_layer_spec(["1"], "weight", None)
    assert session.configs["w4"].resolve("1").weight is not None
    session.set_layer_spec(["1"], "weight", session.config.default.weight)
    session.make_current("w4")
    session.set_layer_spec(["0"], "weight", QuantSpec(bits=4))
    assert session.configs["default"].resolve("0").weight.bits == 8
    assert session.configs["w4"].resolve("0").weight.bits == 4
    copy = session.duplicate("w4")
    assert copy == "w4 (copy)" and session.configs[copy] == session.configs["w4"]
    session.rename(copy, "w4b")
    assert session.config_names == ["default", "w4", "w4b"]
    session.make_current("default")
    assert session.layer_config("0").weight.bits == 8
    session.delete("default")
    assert session.current_name == "w4"
    assert "configs_changed" in rec.names() and "current_name_changed" in rec.names()
    with pytest.raises(ValueError, match="already exists"):
        session.save_as("w4b")
    with pytest.raises(ValueError, match="non-empty"):
        session.save_as("  ")
    with pytest.raises(ValueError, match="no configuration"):
        session.make_current("missing")
    session.delete("w4b")
    with pytest.raises(ValueError, match="only configuration"):
        session.delete("w4")


class _Result:
    def __init__(self, value, size, baseline=0.98):
        self.value, self.model_bytes, self.baseline = value, size, baseline
        self.metric = "accuracy"


def test_results_follow_renames_and_deletes(session):
    rec = Recorder(session.results_changed)
    e = session.add_result(_Result(0.9, 1000.0))
    assert e.name == "default" and e.config == session.config
    session.add_result(
        _Result(0.8, 500.0), name="sweep W4", config=ModelConfig(), series="uniform sweep"
    )
    assert session.baseline == pytest.approx(0.98)
    session.rename("default", "base")
    assert [r.name for r in session.results] == ["base", "sweep W4"]
    session.clear_results("uniform sweep")
    assert [r.series for r in session.results] == ["evaluations"]
    assert rec.names().count("results_changed") == 4


def test_adopt_a_sweep_point(session):
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=3)))
    e = session.add_result(
        _Result(0.7, 300.0), name="uniform W3", config=cfg, series="uniform sweep"
    )
    name = session.adopt(e)
    assert name == "uniform W3" and session.current_name == name
    assert session.config == cfg
    session.make_current("default")
    assert session.adopt(e) == "uniform W3"  # same config: just made current again


def test_selection_and_data(session):
    rec = Recorder(session.selection_changed, session.data_changed)
    session.select(["1"])
    session.select(["1"])  # unchanged: no event
    assert session.selection == ("1",)
    session.add_result(_Result(0.9, 1.0))
    session.set_data("other.npz", data=object())
    assert session.results == []
    assert rec.names() == ["selection_changed", "data_changed"]


def test_weights_are_the_float_ones_even_while_swapped(session, handle):
    p = handle.weight("0")
    w0 = p.detach().clone()
    orig = p.data
    p.data = torch.zeros_like(orig)  # what apply_config does during an evaluation
    try:
        assert torch.equal(session.weight("0"), w0)
    finally:
        p.data = orig
    with pytest.raises(ValueError, match="nope"):
        session.weight("nope")


def test_copy_layer_takes_both_sides_and_normalises():
    w4k = QuantSpec(bits=4, quantizer="kmeans")
    a8 = QuantSpec(bits=8)
    src = ModelConfig(overrides={"fc1": LayerConfig(weight=w4k, activation=a8)})
    dst = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=6)))
    out = copy_layer(src, dst, "fc1")
    assert out.resolve("fc1") == LayerConfig(weight=w4k, activation=a8)
    assert out.resolve("fc2") == dst.default
    # copying a layer that follows the source's default back: no redundant override
    back = copy_layer(dst, out, ["fc1"])
    assert back == dst


def test_replace_config_keeps_current(session):
    session.save_as("other")
    session.make_current("other")
    rec = Recorder(session.config_changed, session.configs_changed, session.current_name_changed)
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=3)))
    session.replace_config("default", cfg)
    assert session.current_name == "other" and session.configs["default"] == cfg
    assert rec.names() == ["configs_changed"]
    session.replace_config("other", cfg)
    assert rec.names() == ["configs_changed", "config_changed", "configs_changed"]
    with pytest.raises(ValueError, match="nope"):
        session.replace_config("nope", cfg)


def test_restore_replaces_configs_results_and_current(session):
    w3 = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=3)))
    rec = Recorder(session.configs_changed, session.results_changed, session.config_changed)
    session.restore(
        {"a": DEFAULT_CONFIG, "w3": w3}, "w3", [("w3", w3, _Result(0.7, 300.0), "evaluations")]
    )
    assert session.config_names == ["a", "w3"] and session.current_name == "w3"
    assert session.config == w3 and [r.name for r in session.results] == ["w3"]
    assert set(rec.names()) == {"configs_changed", "results_changed", "config_changed"}
    bad = ModelConfig(overrides={"nope": LayerConfig()})
    before = dict(session.configs)
    with pytest.raises(ValueError, match="configs.x: layers nope"):
        session.restore({"x": bad})
    with pytest.raises(ValueError, match="current"):
        session.restore({"a": DEFAULT_CONFIG}, "zzz")
    assert session.configs == before and session.current_name == "w3"


def test_modified_means_different_from_what_was_saved(session):
    assert not session.modified
    spec = session.config.default.weight
    session.set_layer_spec(["0"], "weight", QuantSpec(bits=3))
    assert session.modified
    session.set_layer_spec(["0"], "weight", spec)  # back as it was: nothing to save
    assert not session.modified
    session.add_result(_Result(0.9, 1.0))
    assert session.modified
    session.modified = False  # saved
    assert not session.modified
    session.rename("default", "x")
    assert session.modified
    session.rename("x", "default")
    assert not session.modified
