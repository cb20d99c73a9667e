"""``.quantviz`` session files: round trip, atomic writes, errors naming file and field."""

from __future__ import annotations

import json
import math

import pytest

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.data import load_data
from quantviz.eval import evaluate, run
from quantviz.io.session_file import (
    SavedResult,
    SessionData,
    SessionFileError,
    load_session,
    save_session,
)
from quantviz.model import load_model


@pytest.fixture(scope="module")
def session() -> SessionData:
    h = load_model("sample:digits_cnn")
    data = load_data(None, h)
    w4 = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=4, granularity="per_channel")),
        overrides=(("fc2", LayerConfig(weight=None)), ("conv*", LayerConfig(QuantSpec(bits=8)))),
        model="sample:digits_cnn",
    )
    w8 = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=8), activation=QuantSpec(bits=8)))
    r = run(evaluate(h, data, w4, name="W4"))
    return SessionData(
        model="sample:digits_cnn",
        data="sample:digits",
        configs={"W4": w4, "W8 + A8": w8},
        current="W4",
        results=[SavedResult("W4", w4, r)],
        extra={"recent_layer": "fc1"},
    )


def test_round_trip(tmp_path, session):
    p = tmp_path / "s.quantviz"
    save_session(p, session)
    back = load_session(p)
    assert back.model == session.model and back.data == session.data
    assert list(back.configs) == ["W4", "W8 + A8"] and back.configs == session.configs
    assert back.current == "W4" and back.extra == {"recent_layer": "fc1"}
    (saved,) = back.results
    orig = session.results[0]
    assert saved.name == "W4" and saved.series == "evaluations" and saved.config == orig.config
    r0, r1 = orig.result, saved.result
    assert type(r1) is type(r0)
    assert (r1.metric, r1.value, r1.model_bytes, r1.bops) == (
        r0.metric,
        r0.value,
        r0.model_bytes,
        r0.bops,
    )
    fc2 = next(lay for lay in r1.layers if lay["fqn"] == "fc2")
    assert fc2["weight_sqnr_db"] is None  # kept float
    assert r1.to_dict() == r0.to_dict()
    doc = json.loads(p.read_text())
    assert doc["format"] == "quantviz-session" and doc["version"] == 1


def test_save_is_atomic(tmp_path, monkeypatch, session):
    p = tmp_path / "s.quantviz"
    p.write_text("old")
    monkeypatch.setattr(
        "quantviz.io.atomic.os.replace", lambda s, d: (_ for _ in ()).throw(OSError(28, "full"))
    )
    with pytest.raises(SessionFileError, match="s.quantviz: cannot write: full"):
        save_session(p, session)
    assert p.read_text() == "old" and [x.name for x in tmp_path.iterdir()] == ["s.quantviz"]


def test_current_must_name_a_config(tmp_path):
    with pytest.raises(SessionFileError, match="current"):
        save_session(tmp_path / "a.quantviz", SessionData(current="nope"))
    assert list(tmp_path.iterdir()) == []


def _doc(**kw):
    return {"format": "quantviz-session", "version": 1, **kw}


@pytest.mark.parametrize(
    "doc, match",
    [
        ([], "expected a JSON object"),
        ({"format": "other", "version": 1}, "format: must be 'quantviz-session'"),
        (_doc(version=3), "version: 3 is newer"),
        (_doc(bogus=1), "bogus: unknown field"),
        (_doc(model=3), "model: must be a string"),
        (
            _doc(
                configs={
                    "A": {
                        "format": "quantviz-config",
                        "version": 1,
                        "default": {"weight": {"bits": 0}},
                    }
                }
            ),
            r"configs\.A\.default\.weight\.bits: must be 1\.\.16",
        ),
        (_doc(configs={}, current="A"), "current: 'A' is not one of the configs"),
        (_doc(model=""), "model: must not be empty"),
        (_doc(data=" "), "data: must not be empty"),
        (_doc(configs={"": {"format": "quantviz-config", "version": 2}}), "configs: config names"),
        (_doc(results={}), "results: must be a list"),
        (
            _doc(
                results=[
                    {
                        "name": "A",
                        "config": {"format": "quantviz-config", "version": 1},
                        "result": {"metric": "accuracy"},
                    }
                ]
            ),
            r"results\[0\]\.result: missing field\(s\) value",
        ),
    ],
)
def test_errors_name_file_and_field(tmp_path, doc, match):
    p = tmp_path / "bad.quantviz"
    p.write_text(json.dumps(doc))
    with pytest.raises(SessionFileError, match=match) as info:
        load_session(p)
    assert str(info.value).startswith(str(p))


def test_unreadable(tmp_path):
    with pytest.raises(SessionFileError, match="no.quantviz: no such file"):
        load_session(tmp_path / "no.quantviz")
    p = tmp_path / "x.quantviz"
    p.write_text("{oops")
    with pytest.raises(SessionFileError, match="x.quantviz: invalid JSON at line 1"):
        load_session(p)


def test_non_finite_numbers_are_written_as_null(tmp_path, session):
    r = session.results[0].result
    assert all(
        lay["weight_sqnr_db"] is None or math.isfinite(lay["weight_sqnr_db"])
        for lay in r.to_dict()["layers"]
    )
    save_session(tmp_path / "s.quantviz", session)
    assert "Infinity" not in (tmp_path / "s.quantviz").read_text()


def _cfg_doc(bits: int) -> dict:
    return {"format": "quantviz-config", "version": 2, "default": {"weight": {"bits": bits}}}


def test_current_naming_a_renamed_config_loads(tmp_path):
    """The app renames the first config and saves: ``current`` names the new name."""
    from quantviz.session import Session

    s = Session()
    s.add_config("W4", ModelConfig(default=LayerConfig(QuantSpec(bits=4))))
    s.rename("default", "W8 baseline")
    assert s.current_name == "W8 baseline" and next(iter(s.configs)) == "W8 baseline"
    p = tmp_path / "renamed.quantviz"
    save_session(p, SessionData(model="m.pt2", configs=dict(s.configs), current=s.current_name))
    back = load_session(p)
    assert back.current == "W8 baseline" and list(back.configs) == ["W8 baseline", "W4"]
    assert back.warnings == []


def test_stale_current_after_a_hand_rename_opens_the_first_config(tmp_path):
    """``current`` still names the config's old name: the session opens, on the first one."""
    p = tmp_path / "hand.quantviz"
    p.write_text(
        json.dumps(_doc(configs={"baseline": _cfg_doc(8), "W4": _cfg_doc(4)}, current="default"))
    )
    back = load_session(p)
    assert back.current == "baseline"
    (warning,) = back.warnings
    assert "current: 'default' is not one of the configs" in warning and str(p) in warning


def test_null_current_and_null_layer_entry(tmp_path):
    p = tmp_path / "n.quantviz"
    cfg = {**_cfg_doc(8), "layers": {"conv1": None}}
    p.write_text(json.dumps(_doc(configs={"A": cfg}, current=None)))
    back = load_session(p)
    assert back.configs["A"].resolve("conv1").is_float
    assert back.current is None and back.warnings == []
