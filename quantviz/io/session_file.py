"""``.quantviz`` session files: model source, data source, named configs and their results.

A session file is JSON::

    {"format": "quantviz-session", "version": 1,
     "model": "sample:digits_cnn", "data": "sample:digits",
     "current": "W4 mixed",
     "configs": {"default": {<config document>}, "W4 mixed": {...}},
     "results": [{"name": "W4 mixed", "series": "evaluations",
                  "config": {<config document>}, "result": {<EvalResult.to_dict()>}}],
     "extra": {},
     "tuned": {"file": "s.quantviz.tuned-1a2b3c4d.safetensors", "sha256": "<hex>",
               "configs": {"W4 mixed qat-lsq": 0}}}

``tuned`` (version 2; a session without it is written as version 1) stores the fine-tuned
(QAT) float weights of configurations in one safetensors file beside the session, named
after the session file and the first 8 hex digits of its content's SHA-256; tensor
``"<i>/<param name>"`` is parameter ``param name`` of weight set ``i`` (configurations that
share one set, a copy of a fine-tuned configuration, name the same ``i``). The weights file
is written (atomically) before the session; the session names it with its hash, so a
session never pairs with another save's weights: a saved pair is consistent whatever
interrupts the writer; older weights files of the same session are deleted after the session
is in place. Reading checks the hash and refuses the whole session (nothing changes) when the
weights file is missing, altered or unreadable, naming it: a fine-tuned configuration
evaluated on the loaded weights would silently be another configuration.

Configs use the config-file document (:func:`quantviz.io.config_to_dict`), so each one is
validated exactly like a config file, and the configs of older sessions are migrated like
old config files (version-1 configs keep their meaning). Written atomically; reading raises
:class:`SessionFileError` (a ``ValueError``) naming the file and the field. Reading is
bounded like config files: over 16 MB, nested deeper than 100 levels, not a regular file
or not UTF-8 is refused before parsing. Model, data and config names must not be blank.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Generator, Iterator
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from quantviz.core.spec import ModelConfig
from quantviz.io.atomic import atomic_path, atomic_write_text
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
    "SaveProgress",
    "SavedResult",
    "SessionData",
    "SessionFileError",
    "eval_result_from_dict",
    "load_session",
    "save_session",
    "save_session_steps",
]

SESSION_FORMAT = "quantviz-session"
SESSION_VERSION = 2
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
    #: configuration name -> its fine-tuned float weights (param name -> tensor); several
    #: names may share one mapping (written once)
    tuned: dict[str, Any] = field(default_factory=dict)


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


def session_to_dict(s: SessionData, tuned: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document of ``s`` (``tuned``: its ``"tuned"`` field, see the module doc)."""
    if s.current is not None and s.current not in s.configs:
        raise ValueError(f"current: {s.current!r} is not one of the configs")
    for n in s.tuned:
        if n not in s.configs:
            raise ValueError(f"tuned: {n!r} is not one of the configs")
    doc = {
        "format": SESSION_FORMAT,
        # version 1 without fine-tuned weights: an older quantviz still opens those
        "version": SESSION_VERSION if tuned is not None else 1,
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
    if tuned is not None:
        doc["tuned"] = tuned
    return doc


def _tuned_pattern(session_name: str) -> re.Pattern[str]:
    return re.compile(re.escape(session_name) + r"\.tuned-[0-9a-f]{8}\.safetensors")


#: safetensors dtype names of the float dtypes fine-tuned weights may have
_ST_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}
#: bytes hashed or written between two progress items (a cancel stops within one chunk)
CHUNK_BYTES = 16 << 20


@dataclass(frozen=True)
class SaveProgress:
    """Progress of :func:`save_session_steps`: ``stage`` (``hash weights``, ``write
    weights``, ``write session``) with ``done``/``total`` bytes of it, and ``fraction`` of
    the whole save (never decreasing)."""

    stage: str
    done: int
    total: int
    fraction: float


class _TunedFile:
    """The safetensors file of ``SessionData.tuned``, produced piece by piece.

    Written here, not by ``safetensors.torch.save``: that call holds the GIL for the whole
    file (~5 s for 500 MB: a frozen window when it runs in a worker thread), while hashing
    and writing a tensor's bytes release it. The layout is safetensors' own (8-byte
    little-endian header size, JSON header padded to 8 bytes, raw little-endian data);
    ``safetensors.torch.load`` reads it (tested)."""

    def __init__(self, s: SessionData) -> None:
        import torch

        sets: dict[int, int] = {}  # id(mapping) -> index
        self.configs: dict[str, int] = {}
        self.tensors: list[tuple[str, torch.Tensor]] = []
        header: dict[str, Any] = {"__metadata__": {"format": "quantviz-tuned-weights"}}
        offset = 0
        for cname, weights in s.tuned.items():
            new = id(weights) not in sets
            i = sets.setdefault(id(weights), len(sets))
            self.configs[cname] = i
            if not new:
                continue  # a set written already (copies of a configuration share one)
            for pname, t in weights.items():
                if not isinstance(t, torch.Tensor):
                    raise ValueError(f"tuned.{cname}: {pname}: not a tensor ({type(t).__name__})")
                dtype = _ST_DTYPES.get(str(t.dtype).removeprefix("torch."))
                if dtype is None:
                    raise ValueError(f"tuned.{cname}: {pname}: not a float tensor ({t.dtype})")
                t = t.detach().cpu().contiguous()
                key = f"{i}/{pname}"
                n = t.numel() * t.element_size()
                header[key] = {
                    "dtype": dtype,
                    "shape": list(t.shape),
                    "data_offsets": [offset, offset + n],
                }
                offset += n
                self.tensors.append((key, t))
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)
        self.head = len(head).to_bytes(8, "little") + head
        self.size = len(self.head) + offset

    def chunks(self) -> Iterator[memoryview]:
        """The file's bytes, at most :data:`CHUNK_BYTES` at a time (views, no copies)."""
        import torch

        yield memoryview(self.head)
        for _, t in self.tensors:
            if not t.numel():
                continue
            raw = memoryview(t.reshape(-1).view(torch.uint8).numpy())
            for a in range(0, len(raw), CHUNK_BYTES):
                yield raw[a : a + CHUNK_BYTES]


def save_session_steps(
    path: str | os.PathLike[str], s: SessionData
) -> Generator[SaveProgress, None, None]:
    """:func:`save_session` as a generator yielding :class:`SaveProgress` (for a worker
    thread: closing it at a yield (a cancel) leaves the previous files as they were).

    Fine-tuned weights are hashed, then written (atomically) under their hash's name, then
    the session; the last yield comes before the session is written, so a save that gets
    past it completes."""
    name = str(path)
    target = os.path.realpath(path)
    folder, base = os.path.split(target)
    try:
        packed = _TunedFile(s) if s.tuned else None
    except (RuntimeError, ValueError) as exc:
        raise SessionFileError(
            f"cannot serialise the fine-tuned weights ({exc})", file=name
        ) from None
    ref = None
    if packed is not None:
        size = packed.size
        # a quick check of what can fail before the long part (the document itself)
        try:
            session_to_dict(s, {"file": "", "sha256": "", "configs": packed.configs})
        except ValueError as exc:
            raise SessionFileError(f"cannot serialise the session ({exc})", file=name) from None
        h = hashlib.sha256()
        done = 0
        for chunk in packed.chunks():
            h.update(chunk)  # releases the GIL
            done += len(chunk)
            yield SaveProgress("hash weights", done, size, 0.3 * done / size)
        digest = h.hexdigest()
        wname = f"{base}.tuned-{digest[:8]}.safetensors"
        ref = {"file": wname, "sha256": digest, "configs": packed.configs}
    try:
        text = json.dumps(session_to_dict(s, ref), indent=2, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise SessionFileError(f"cannot serialise the session ({exc})", file=name) from None
    created = ""  # the weights file this save created (removed if the session is not written)
    if packed is not None and ref is not None:
        wpath = os.path.join(folder, str(ref["file"]))
        # an existing file of that name holds these weights and may be named by the
        # session in place: replaced (atomically), never removed
        created = "" if os.path.lexists(wpath) else wpath
        try:
            with atomic_path(wpath) as tmp, open(tmp, "wb") as fh:
                done = 0
                for chunk in packed.chunks():
                    fh.write(chunk)
                    done += len(chunk)
                    yield SaveProgress("write weights", done, size, 0.3 + 0.65 * done / size)
        except OSError as exc:
            raise SessionFileError(
                f"cannot write the fine-tuned weights: {exc.strerror or exc}", file=wpath
            ) from exc
    try:
        yield SaveProgress("write session", 0, 1, 0.95)
        try:
            atomic_write_text(path, text + "\n")
        except OSError as exc:
            raise SessionFileError(f"cannot write: {exc.strerror or exc}", file=name) from exc
    except BaseException:  # closed (a cancel) or failed: nothing names the new weights file
        if created:
            with contextlib.suppress(OSError):
                os.unlink(created)
        raise
    # the session is in place: weights files of earlier saves of it are no longer named
    keep = None if ref is None else ref["file"]
    pattern = _tuned_pattern(base)
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        entries = []
    for e in entries:
        if e != keep and pattern.fullmatch(e):
            with contextlib.suppress(OSError):  # a stale file is harmless: nothing names it
                os.unlink(os.path.join(folder, e))


def save_session(path: str | os.PathLike[str], s: SessionData) -> None:
    """Write ``s`` to ``path`` atomically (all or nothing); fine-tuned weights go to a
    safetensors file beside it, written first (see the module doc)."""
    for _ in save_session_steps(path, s):
        pass


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
    if version >= 2:
        known = (*known, "tuned")
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


def _tuned_ref(doc: dict[str, Any], configs: dict[str, ModelConfig], name: str) -> Any:
    """The validated ``tuned`` field of a session document (None when absent)."""
    ref = doc.get("tuned")
    if ref is None:
        return None
    if not isinstance(ref, dict):
        raise SessionFileError("must be a mapping", file=name, path="tuned")
    for k in ref:
        if k not in ("file", "sha256", "configs"):
            raise SessionFileError(
                "unknown field (known: file, sha256, configs)", file=name, path=f"tuned.{k}"
            )
    f = ref.get("file")
    if not isinstance(f, str) or not f or os.path.basename(f) != f or f in (".", ".."):
        raise SessionFileError(
            f"must be a file name beside the session, got {f!r}", file=name, path="tuned.file"
        )
    h = ref.get("sha256")
    if not isinstance(h, str) or not re.fullmatch(r"[0-9a-f]{64}", h):
        raise SessionFileError("must be 64 hex digits", file=name, path="tuned.sha256")
    cfgs = ref.get("configs")
    if not isinstance(cfgs, dict) or not cfgs:
        raise SessionFileError(
            "must be a non-empty mapping config name -> weight set", file=name, path="tuned.configs"
        )
    for cname, i in cfgs.items():
        if cname not in configs:
            raise SessionFileError(
                f"{cname!r} is not one of the configs", file=name, path="tuned.configs"
            )
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(cfgs):
            raise SessionFileError(
                f"must be a weight set index 0..{len(cfgs) - 1}, got {i!r}",
                file=name,
                path=f"tuned.configs.{cname}",
            )
    return ref


def _read_tuned(path: str, ref: dict[str, Any]) -> dict[str, Any]:
    """Config name -> fine-tuned weights, read from the file ``ref`` names beside ``path``;
    :class:`SessionFileError` names the weights file."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load

    session = str(path)
    wpath = os.path.join(os.path.dirname(os.path.realpath(path)), ref["file"])
    hint = f"(the fine-tuned weights of {', '.join(map(repr, ref['configs']))} of {session})"
    try:
        with open(wpath, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise SessionFileError(
            f"no such file {hint}; it is saved beside the session: copy both", file=wpath
        ) from None
    except OSError as exc:
        raise SessionFileError(f"cannot read: {exc.strerror or exc} {hint}", file=wpath) from None
    if hashlib.sha256(data).hexdigest() != ref["sha256"]:
        raise SessionFileError(
            f"its content is not what the session saved (SHA-256 differs) {hint}", file=wpath
        )
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise SessionFileError(f"not a safetensors file ({exc}) {hint}", file=wpath) from None
    sets: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        i, sep, pname = key.partition("/")
        if not sep or not i.isdigit() or not pname:
            raise SessionFileError(f"unexpected tensor name {key!r} {hint}", file=wpath)
        if not torch.is_floating_point(t):
            raise SessionFileError(f"{key}: must be a float tensor, got {t.dtype}", file=wpath)
        sets.setdefault(int(i), {})[pname] = t
    out: dict[str, Any] = {}
    for cname, i in ref["configs"].items():
        if i not in sets:
            raise SessionFileError(f"no weights of {cname!r} (set {i}) {hint}", file=wpath)
        out[cname] = sets[i]
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
    out = session_from_dict(doc, name)
    ref = _tuned_ref(doc, out.configs, name)
    if ref is not None:
        out.tuned = _read_tuned(name, ref)
    return out
