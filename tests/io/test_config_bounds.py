"""Bounded parsing of config and session files (issue 15, "Inputs that must be bounded").

Every input here is built by the test. Each must end in a ``ConfigError`` /
``SessionFileError`` (``ValueError``) naming the file, quickly and in little memory: no
``RecursionError``, no hang, no exponential expansion.
"""

from __future__ import annotations

import json
import os

import pytest

from quantviz.io import ConfigError, config_from_text, load_config
from quantviz.io.config import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES
from quantviz.io.session_file import SessionFileError, load_session

# A hang guard, not a speed assertion: the unbounded parser ran for 240 s on a bomb.
pytestmark = pytest.mark.timeout(120)

HEAD_YAML = "format: quantviz-config\nversion: 2\n"


def _billion_laughs(levels: int = 9, width: int = 9, at: str = "model") -> str:
    lines = [HEAD_YAML.rstrip("\n"), 'l0: &l0 "lol"']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*l{i - 1}"] * width)
        lines.append(f"l{i}: &l{i} [{refs}]")
    lines.append(f"{at}: *l{levels}")
    return "\n".join(lines) + "\n"


def _load_yaml_text(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value).startswith(str(p))
    return info.value


# -- YAML aliases ---------------------------------------------------------------------------
@pytest.mark.parametrize("at", ["model", "version", "format", "layers", "default"])
def test_billion_laughs_is_refused_before_anything_is_built(tmp_path, at):
    # 9^9 = 387,420,489 strings once expanded; the document is 400 bytes
    text = _billion_laughs(at=at).replace(f"{HEAD_YAML}", "" if at != "model" else HEAD_YAML)
    err = _load_yaml_text(tmp_path, text)
    assert f"aliases expand to more than {MAX_NODES:,} nodes" in str(err)
    assert err.line is not None


def test_alias_bomb_inside_a_layer_entry(tmp_path):
    text = (
        HEAD_YAML
        + "x: &x [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]\n"
        + "".join(
            f"x{i}: &x{i} [{', '.join([f'*x{i - 1}' if i else '*x'] * 10)}]\n" for i in range(6)
        )
        + "layers:\n  conv1: {weight: {bits: *x5}}\n"
    )
    err = _load_yaml_text(tmp_path, text)
    assert "aliases expand to more than" in str(err)


def test_merge_key_bomb(tmp_path):
    # each mapping merges the previous one twice over: PyYAML would copy 2^40 pairs
    lines = [HEAD_YAML.rstrip("\n"), "m0: &m0 {a: 1, b: 2}"]
    for i in range(1, 41):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}")
    err = _load_yaml_text(tmp_path, "\n".join(lines) + "\n")
    assert "aliases expand to more than" in str(err)


@pytest.mark.parametrize(
    "text",
    [
        HEAD_YAML + "layers: &a {conv1: *a}\n",
        HEAD_YAML + "model: &a [*a]\n",
        HEAD_YAML + "default: &d {weight: {bits: [*d]}}\n",
    ],
)
def test_self_referencing_alias(tmp_path, text):
    err = _load_yaml_text(tmp_path, text)
    assert "an alias refers to a node that contains it" in str(err)


def test_modest_aliases_are_fine():
    text = (
        HEAD_YAML
        + "default: {weight: &w4 {bits: 4, granularity: per_channel}}\n"
        + "layers:\n  conv1: {activation: *w4}\n  fc1: {activation: *w4}\n"
    )
    cfg = config_from_text(text, "yaml")
    assert cfg.resolve("fc1").activation == cfg.default.weight


def test_alias_chain_deeper_than_the_limit_once_expanded(tmp_path):
    # each anchor nests the previous one 10 deeper: 15 anchors -> 150 levels
    lines = [HEAD_YAML.rstrip("\n"), "a0: &a0 1"]
    for i in range(1, 16):
        lines.append(f"a{i}: &a{i} " + "[" * 10 + f"*a{i - 1}" + "]" * 10)
    err = _load_yaml_text(tmp_path, "\n".join(lines) + "\n")
    assert f"nested deeper than {MAX_DEPTH} levels once its aliases are expanded" in str(err)


# -- depth ----------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 100_000])
@pytest.mark.parametrize("kind", ["list", "dict"])
def test_deep_json(tmp_path, depth, kind):
    opener, closer = ("[", "]") if kind == "list" else ('{"a": ', "}")
    body = opener * depth + "1" + closer * depth
    text = '{"format": "quantviz-config", "version": 2, "model": ' + body + "}"
    p = tmp_path / "deep.json"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value) == f"{p}: invalid JSON: nested deeper than {MAX_DEPTH} levels"


def test_json_at_the_depth_limit_is_parsed(tmp_path):
    body = "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1)
    p = tmp_path / "ok.json"
    p.write_text('{"format": "quantviz-config", "version": 2, "model": ' + body + "}")
    with pytest.raises(ConfigError, match=r"model: must be a string or null, got a list"):
        load_config(p)


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,  # flow sequences
        "{a: " * 100_000 + "1" + "}" * 100_000,  # flow mappings
        "\n" + "- " * 100_000 + "x",  # block sequences on one line
    ],
)
def test_deep_yaml(tmp_path, body):
    err = _load_yaml_text(tmp_path, HEAD_YAML + "model: " + body + "\n")
    assert f"refused YAML: nested deeper than {MAX_DEPTH} levels" in str(err)
    assert err.line is not None


# -- size and kind of file --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["big.json", "big.yaml"])
def test_oversized_file_is_refused_before_reading(tmp_path, name):
    p = tmp_path / name
    with open(p, "wb") as f:  # sparse: no disk space used
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value) == (
        f"{p}: {MAX_FILE_BYTES + 1:,} bytes; a config file is at most {MAX_FILE_BYTES:,} "
        "bytes (16 MB): is this a config file?"
    )


def test_oversized_text_is_refused():
    with pytest.raises(ConfigError, match=r"characters; a config is at most"):
        config_from_text(" " * (MAX_FILE_BYTES + 1), "yaml", source="big")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_not_waited_on(tmp_path):
    p = tmp_path / "pipe.json"
    os.mkfifo(p)
    with pytest.raises(ConfigError, match=r"pipe\.json: not a regular file"):
        load_config(p)
    s = tmp_path / "pipe.quantviz"
    os.mkfifo(s)
    with pytest.raises(SessionFileError, match=r"pipe\.quantviz: not a regular file"):
        load_session(s)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_endless_device_is_refused(tmp_path):
    p = tmp_path / "zero.yaml"
    p.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match=r"zero\.yaml: not a regular file"):
        load_config(p)


# -- values the parsers choke on ------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("int.yaml", HEAD_YAML + "default: {weight: {bits: 1" + "0" * 5000 + "}}\n"),
        ("int.json", '{"format": "quantviz-config", "version": 1' + "0" * 5000 + "}"),
        ("date.yaml", HEAD_YAML + "model: 2024-13-45\n"),
        ("nul.yaml", HEAD_YAML + "model: a\x00b\n"),
    ],
)
def test_values_that_break_the_parser_are_messages(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value).startswith(str(p))
    assert "invalid " in str(info.value)


# -- session files ------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_session_file(tmp_path, depth):
    p = tmp_path / "deep.quantviz"
    body = "[" * depth + "]" * depth
    p.write_text('{"format": "quantviz-session", "version": 1, "extra": {"x": ' + body + "}}")
    with pytest.raises(SessionFileError) as info:
        load_session(p)
    assert str(info.value) == f"{p}: invalid JSON: nested deeper than {MAX_DEPTH} levels"


def test_deep_config_inside_a_session(tmp_path):
    p = tmp_path / "deepcfg.quantviz"
    cfg = '{"format": "quantviz-config", "version": 2, "model": ' + "[" * 50_000 + "]" * 50_000
    p.write_text('{"format": "quantviz-session", "version": 1, "configs": {"A": ' + cfg + "}}}")
    with pytest.raises(SessionFileError, match=r"nested deeper than"):
        load_session(p)


def test_oversized_session_file(tmp_path):
    p = tmp_path / "big.quantviz"
    with open(p, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(SessionFileError, match=r"big\.quantviz: 16,777,217 bytes; a session"):
        load_session(p)


def test_session_duplicate_keys_and_huge_ints(tmp_path):
    p = tmp_path / "dup.quantviz"
    p.write_text('{"format": "quantviz-session", "format": "quantviz-session", "version": 1}')
    with pytest.raises(SessionFileError, match=r"dup\.quantviz: invalid JSON: duplicate key"):
        load_session(p)
    p.write_text('{"format": "quantviz-session", "version": 1' + "0" * 5000 + "}")
    with pytest.raises(SessionFileError, match=r"dup\.quantviz: invalid JSON: "):
        load_session(p)


def test_session_not_utf8(tmp_path):
    p = tmp_path / "bin.quantviz"
    p.write_bytes(b"\xff\xfe" + json.dumps({"format": "quantviz-session"}).encode("utf-16-le"))
    with pytest.raises(SessionFileError, match=r"bin\.quantviz: not UTF-8 text"):
        load_session(p)


# -- File > Import (every problem listed) goes through the same bounds --------------------------
@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("bomb.yaml", _billion_laughs(), "aliases expand to more than"),
        ("deep.json", '{"model": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper"),
        ("deep.yaml", HEAD_YAML + "model: " + "[" * 100_000 + "]" * 100_000, "nested deeper"),
    ],
)
def test_import_config_is_bounded(tmp_path, name, text, fragment):
    from quantviz.io.importing import ConfigImportError, import_config
    from quantviz.model import load_model

    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigImportError) as info:
        import_config(p, load_model("sample:digits_cnn"))
    assert fragment in str(info.value) and str(p) in str(info.value)


def test_import_config_of_a_sparse_giant(tmp_path):
    from quantviz.io.importing import ConfigImportError, import_config
    from quantviz.model import load_model

    p = tmp_path / "giant.json"
    with open(p, "wb") as f:
        f.truncate(MAX_FILE_BYTES * 4)
    with pytest.raises(ConfigImportError, match="a config file is at most"):
        import_config(p, load_model("sample:digits_cnn"))
