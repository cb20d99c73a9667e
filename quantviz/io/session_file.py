"""``.quantviz`` session files: model source, data source, named configs and their results.

A session file is JSON::

    {"format": "quantviz-session", "version": 1,
     "model": "sample:digits_cnn", "data": "sample:digits",
     "current": "W4 mixed",
     "configs": {"default": {<config document>}, "W4 mixed": {...}},
     "results": [{"name": "W4 mixed", "series": "evaluations",
                  "config": {<config document>}, "result": {<EvalResult.to_dict()>}}],
     "extra": {}}

Configs use the config-file document (:func:`quantviz.io.config_to_dict`), so each one is
validated exactly like a config file, and the configs of older sessions are migrated like
old config files (version-1 configs keep their meaning). Written atomically; reading raises
:class:`SessionFileError` (a ``ValueError``) naming the file and the field. Reading is
bounded like config files: over 16 MB, nested deeper than 100 levels, not a regular file
or not UTF-8 is refused before parsing. Model, data and config names must not be blank.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from quantviz.core.spec import ModelConfig
from quantviz.io.atomic import atomic_write_text
from quantviz.io.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    parse_json_bounded,
    read_text_bounded,
)

__all__ = [
    "SESSION_FORMAT",
    "SESSION_SUFFIX",
    "SESSION_VERSION",
    "SavedResult",
    "SessionData",
    "SessionFileError",
    "eval_result_from_dict",
    "load_session",
    "save_session",
]

SESSION_FORMAT = "quantviz-session"
SESSION_VERSION = 1
SESSION_SUFFIX = ".quantviz"


class SessionFileError(ValueError):
    """A session file that cannot be read or written: ``"<file>: <field>: <detail>"``."""

    def __init__(self, detail: str, *, file: str, path: str = "") -> None:
        self.file, self.path, self.detail = file, path, detail
        super().__init__(": ".join(p for p in (file, path, detail) if p))


@dataclass(frozen=True)
class SavedResult:
    """One evaluated configuration: a point on the trade-off plot, as the session holds it
    and as a session file stores it (the app's ``quantviz.session.ResultEntry`` is this type).

    ``series`` groups points into curves (``"evaluations"``, each sweep's own name);
    ``result`` is the engine's EvalResult (``.value``, ``.model_bytes``, ``.baseline``,
    ``.metric``, ``.compression`` ...).
    """

    name: str
    config: ModelConfig
    result: Any
    series: str = "evaluations"

    @property
    def model_bytes(self) -> float:
        return float(self.result.model_bytes)

    @property
    def value(self) -> float:
        return float(self.result.value)


@dataclass
class SessionData:
    """Everything a session file holds; ``configs`` keeps its order."""

    model: str | None = None
    data: str | None = None
    configs: dict[str, ModelConfig] = field(default_factory=dict)
    current: str | None = None
    results: list[SavedResult] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: what reading repaired, one line each (e.g. a stale ``current`` after a rename);
    #: never written
    warnings: list[str] = field(default_factory=list)


def eval_result_from_dict(d: dict[str, Any]) -> Any:
    """An :class:`~quantviz.eval.EvalResult` from its ``to_dict()`` (``ValueError`` on gaps)."""
    from quantviz.eval.results import EvalResult

    if not isinstance(d, dict):
        raise ValueError(f"must be a mapping, got {type(d).__name__}")
    known = {f.name: f for f in fields(EvalResult)}
    required = [
        n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING
    ]
    missing = [n for n in required if n not in d]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    return EvalResult(**{k: v for k, v in d.items() if k in known})


def session_to_dict(s: SessionData) -> dict[str, Any]:
    """The JSON document of ``s``."""
    if s.current is not None and s.current not in s.configs:
        raise ValueError(f"current: {s.current!r} is not one of the configs")
    return {
        "format": SESSION_FORMAT,
        "version": SESSION_VERSION,
        "model": s.model,
        "data": s.data,
        "current": s.current,
        "configs": {name: config_to_dict(c) for name, c in s.configs.items()},
        "results": [
            {
                "name": r.name,
                "series": r.series,
                "config": config_to_dict(r.config),
                "result": r.result.to_dict() if hasattr(r.result, "to_dict") else r.result,
            }
            for r in s.results
        ],
        "extra": s.extra,
    }


def save_session(path: str | os.PathLike[str], s: SessionData) -> None:
    """Write ``s`` to ``path`` atomically (all or nothing)."""
    name = str(path)
    try:
        text = json.dumps(session_to_dict(s), indent=2, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise SessionFileError(f"cannot serialise the session ({exc})", file=name) from None
    try:
        atomic_write_text(path, text + "\n")
    except OSError as exc:
        raise SessionFileError(f"cannot write: {exc.strerror or exc}", file=name) from exc


def _opt_str(doc: dict[str, Any], key: str, name: str) -> str | None:
    v = doc.get(key)
    if v is not None and not isinstance(v, str):
        raise SessionFileError(
            f"must be a string or null, got {type(v).__name__}", file=name, path=key
        )
    if v is not None and not v.strip():
        raise SessionFileError(f"must not be empty (got {v!r}); use null", file=name, path=key)
    return v


def _config(obj: Any, name: str, where: str) -> ModelConfig:
    try:
        return config_from_dict(obj, source=None)
    except ConfigError as e:
        raise SessionFileError(e.detail, file=name, path=f"{where}.{e.path}".rstrip(".")) from None


def session_from_dict(doc: Any, name: str = "<dict>") -> SessionData:
    """Validate a session document; :class:`SessionFileError` names ``name`` and the field."""
    if not isinstance(doc, dict):
        raise SessionFileError("not a quantviz session (expected a JSON object)", file=name)
    if doc.get("format") != SESSION_FORMAT:
        raise SessionFileError(
            f"must be {SESSION_FORMAT!r}, got {doc.get('format')!r}", file=name, path="format"
        )
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SessionFileError(
            f"must be a positive integer, got {version!r}", file=name, path="version"
        )
    if version > SESSION_VERSION:
        raise SessionFileError(
            f"{version} is newer than this quantviz reads ({SESSION_VERSION}); upgrade quantviz",
            file=name,
            path="version",
        )
    known = ("format", "version", "model", "data", "current", "configs", "results", "extra")
    for k in doc:
        if k not in known:
            raise SessionFileError(f"unknown field (known: {', '.join(known)})", file=name, path=k)
    out = SessionData(model=_opt_str(doc, "model", name), data=_opt_str(doc, "data", name))
    configs = doc.get("configs", {})
    if not isinstance(configs, dict):
        raise SessionFileError("must be a mapping name -> config", file=name, path="configs")
    for cname, cdoc in configs.items():
        if not cname.strip():
            raise SessionFileError(
                f"config names must not be empty, got {cname!r}", file=name, path="configs"
            )
        out.configs[cname] = _config(cdoc, name, f"configs.{cname}")
    out.current = _opt_str(doc, "current", name)
    if out.current is not None and out.current not in out.configs:
        if not out.configs:
            raise SessionFileError(
                f"{out.current!r} is not one of the configs (the session holds none)",
                file=name,
                path="current",
            )
        # A config renamed by hand (or by an older quantviz) leaves ``current`` stale:
        # open the first configuration, as when ``current`` is null, and say so.
        first = next(iter(out.configs))
        out.warnings.append(
            f"{name}: current: {out.current!r} is not one of the configs "
            f"({', '.join(map(repr, out.configs))}); opening {first!r}"
        )
        out.current = first
    results = doc.get("results", [])
    if not isinstance(results, list):
        raise SessionFileError("must be a list", file=name, path="results")
    for i, item in enumerate(results):
        where = f"results[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise SessionFileError("must be a mapping with a string name", file=name, path=where)
        cfg = _config(item.get("config"), name, f"{where}.config")
        try:
            res = eval_result_from_dict(item.get("result"))
        except (TypeError, ValueError) as exc:
            raise SessionFileError(str(exc), file=name, path=f"{where}.result") from None
        series = item.get("series", "evaluations")
        if not isinstance(series, str):
            raise SessionFileError("must be a string", file=name, path=f"{where}.series")
        out.results.append(SavedResult(item["name"], cfg, res, series))
    extra = doc.get("extra", {})
    if not isinstance(extra, dict):
        raise SessionFileError("must be a mapping", file=name, path="extra")
    out.extra = extra
    return out


def load_session(path: str | os.PathLike[str]) -> SessionData:
    """Read a ``.quantviz`` file; :class:`SessionFileError` names the file and the field."""
    name = str(path)
    try:
        text = read_text_bounded(path, "session file")
    except FileNotFoundError:
        raise SessionFileError("no such file", file=name) from None
    except IsADirectoryError:
        raise SessionFileError("is a directory, not a session file", file=name) from None
    except OSError as exc:
        raise SessionFileError(f"cannot read: {exc.strerror or exc}", file=name) from None
    except ValueError as exc:  # too big, not a regular file, not UTF-8
        raise SessionFileError(str(exc), file=name) from None
    try:
        doc = parse_json_bounded(text)
    except json.JSONDecodeError as e:
        raise SessionFileError(f"invalid JSON at line {e.lineno}: {e.msg}", file=name) from None
    except ValueError as e:  # nested too deeply, duplicate key, an integer of 5,000 digits
        raise SessionFileError(f"invalid JSON: {e}", file=name) from None
    return session_from_dict(doc, name)
