"""Hugging Face checkpoint folders: what ``save_pretrained`` writes.

A folder holding ``config.json`` plus ``model.safetensors`` (or a sharded
``model.safetensors.index.json`` and its shards; ``tokenizer.json`` when present) is opened
with ``transformers`` strictly offline (``local_files_only=True``, ``HF_HUB_OFFLINE``): the
class named by ``config.json``'s ``architectures`` (``GPT2LMHeadModel``,
``LlamaForCausalLM``, ``BertModel``...; ``AutoModel`` when it names none), the weights read
from the safetensors in the checkpoint's own dtype (``dtype="auto"``: bf16/fp16 stay so).

Everything that can be checked without ``transformers`` is checked first, each problem a
:class:`ModelLoadError` naming the file: no ``config.json``, unreadable JSON, an index
pointing to a missing shard, a truncated or corrupt shard, an architecture
``transformers`` does not know. A ``config.json`` with ``auto_map`` makes ``transformers``
import Python code from the folder (``trust_remote_code``): :class:`TrustRequired` unless
``trust=True``, like a pickle.

The example input of a language model is a row of int64 token ids ``[1, T]`` (``T`` =
min(16, the model's positions)), or what the caller gives (``input_shape`` / one sample of
the data, checked against the vocabulary and the positions by :func:`check_sample`).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from quantviz.model.errors import ModelLoadError, TrustRequired, brief
from quantviz.model.handle import ModelHandle

__all__ = [
    "CONFIG",
    "INDEX",
    "WEIGHTS",
    "check_sample",
    "is_hf_dir",
    "load_hf",
    "read_config",
    "task_of",
]

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
TOKENIZER = "tokenizer.json"
#: tokens in the default example input of a language model
DEFAULT_TOKENS = 16
_JSON_MAX = 64 << 20

#: architecture name suffix -> task (what the model's output is)
_TASKS: tuple[tuple[str, str], ...] = (
    ("ForCausalLM", "causal_lm"),
    ("LMHeadModel", "causal_lm"),
    ("ForMaskedLM", "masked_lm"),
    ("ForSequenceClassification", "sequence_classification"),
    ("ForTokenClassification", "token_classification"),
    ("ForQuestionAnswering", "question_answering"),
    ("ForConditionalGeneration", "seq2seq_lm"),
    ("Model", "base"),
)
#: tasks whose output is ``[batch, tokens, classes / features]`` read as one prediction per
#: token: the metrics move the last dimension to dim 1 (``meta["class_dim"] = -1``). A causal
#: LM's ``[batch, tokens, vocab]`` logits are not among them: perplexity, KL and agreement read
#: its next-token distributions as they are (:mod:`quantviz.data.metrics`).
_CLASSES_LAST = {"masked_lm", "token_classification", "base"}


def is_hf_dir(path: Path) -> bool:
    """Whether ``path`` is a folder holding ``config.json``."""
    return path.is_dir() and (path / CONFIG).is_file()


def task_of(architecture: str | None) -> str:
    """``causal_lm``, ``masked_lm``, ``sequence_classification``, ... or ``base`` from the
    architecture's class name (``GPT2LMHeadModel`` -> ``causal_lm``)."""
    if not architecture:
        return "base"
    for suffix, task in _TASKS:
        if architecture.endswith(suffix):
            return task
    return "base"


def _read_json(path: Path, what: str) -> Any:
    try:
        size = path.stat().st_size
        if size > _JSON_MAX:
            raise ModelLoadError(f"{path}: {what} of {size:,} bytes is too large")
        return json.loads(path.read_text(encoding="utf-8"))
    except ModelLoadError:
        raise
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ModelLoadError(f"{path}: not valid JSON ({why})") from None


def read_config(path: Path) -> dict[str, Any]:
    """The folder's ``config.json`` as a dict (:class:`ModelLoadError` naming the file)."""
    if not path.is_dir():
        raise ModelLoadError(f"{path}: not a folder")
    cfg_path = path / CONFIG
    if not cfg_path.is_file():
        raise ModelLoadError(
            f"{path}: is a directory without {CONFIG}, not a model file; a Hugging Face "
            f"checkpoint folder (what save_pretrained writes) holds {CONFIG} and {WEIGHTS}"
        )
    cfg = _read_json(cfg_path, CONFIG)
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{cfg_path}: must be a JSON object")
    arch = cfg.get("architectures")
    if arch is not None and (
        not isinstance(arch, list) or not all(isinstance(a, str) and a for a in arch)
    ):
        raise ModelLoadError(f"{cfg_path}: architectures must be a list of class names")
    return cfg


# -- safetensors files, checked before transformers reads them -------------------------------
def _check_safetensors(path: Path) -> int:
    """Bytes of tensor data in safetensors file ``path``; :class:`ModelLoadError` when it is
    missing, truncated or its header does not parse."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ModelLoadError(f"{path}: truncated safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n < 2 or n > min(size - 8, 100 << 20):
                raise ModelLoadError(
                    f"{path}: not a safetensors file or truncated (header claims {n:,} bytes, "
                    f"the file has {size:,})"
                )
            header = json.loads(fh.read(n))
    except ModelLoadError:
        raise
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no such file") from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ModelLoadError(f"{path}: corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path}: corrupt safetensors header (not a JSON object)")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise ModelLoadError(f"{path}: corrupt safetensors header (tensor {name!r})") from None
    have = size - 8 - n
    if end > have:
        raise ModelLoadError(
            f"{path}: truncated safetensors file: its tensors need {end:,} bytes of data, the "
            f"file holds {have:,}"
        )
    return end


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of the checkpoint folder ``path``, each checked."""
    single, index = path / WEIGHTS, path / INDEX
    if index.is_file():
        doc = _read_json(index, "index")
        wmap = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(wmap, dict) or not wmap:
            raise ModelLoadError(f"{index}: no weight_map (tensor name -> shard file)")
        shards: list[str] = []
        for name, shard in wmap.items():
            if not isinstance(shard, str) or not shard or "/" in shard or shard.startswith("."):
                raise ModelLoadError(f"{index}: weight_map: {name!r} -> {shard!r} is not a file")
            if shard not in shards:
                shards.append(shard)
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise ModelLoadError(
                f"{index}: points to missing shard(s) {', '.join(missing)} "
                f"(e.g. for {next(k for k, v in wmap.items() if v == missing[0])})"
            )
        files = [path / s for s in shards]
    elif single.is_file():
        files = [single]
    else:
        others = sorted(p.name for p in path.glob("*.bin")) + sorted(
            p.name for p in path.glob("*.pt")
        )
        extra = (
            f" (it holds {', '.join(others[:3])}: pickled weights, which quantviz does not "
            "unpickle; re-save with save_pretrained(..., safe_serialization=True))"
            if others
            else ""
        )
        raise ModelLoadError(f"{path}: no {WEIGHTS} or {INDEX} next to {CONFIG}{extra}")
    for f in files:
        _check_safetensors(f)
    return files


# -- transformers ----------------------------------------------------------------------------
@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set and progress bars off meanwhile."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS")
    old = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ[k] = "1"
    bars = None
    try:
        from transformers.utils import logging as tlog

        bars = tlog.is_progress_bar_enabled()
        tlog.disable_progress_bar()
    except Exception:  # pragma: no cover - an older transformers
        tlog = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if tlog is not None and bars:
            tlog.enable_progress_bar()


def _import_transformers(path: Path) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when huggingface_hub is imported
    try:
        import transformers
    except ImportError as exc:
        raise ModelLoadError(
            f"{path}: a Hugging Face checkpoint; opening it needs transformers (pip install "
            f"'quantviz[hf]'): {brief(exc)}"
        ) from None
    return transformers


def _model_class(path: Path, cfg: Mapping[str, Any], trust: bool, tf: Any) -> tuple[Any, str]:
    """The class to load with and the name its task is read from (the architecture, or for
    code from the folder the auto class ``auto_map`` names: ``AutoModelForCausalLM``)."""
    archs = cfg.get("architectures") or []
    arch = archs[0] if archs else ""
    auto_map = cfg.get("auto_map")
    if auto_map:
        if not trust:
            names = ", ".join(sorted(auto_map)) if isinstance(auto_map, dict) else str(auto_map)
            raise TrustRequired(
                path / CONFIG,
                f"its auto_map ({names}) makes transformers import the architecture's Python "
                "code from the folder (trust_remote_code)",
            )
        if isinstance(auto_map, dict):
            for auto in ("AutoModelForCausalLM", "AutoModelForMaskedLM", "AutoModel"):
                if auto in auto_map:
                    return getattr(tf, auto), auto
        return tf.AutoModel, "AutoModel"
    if not arch:
        return tf.AutoModel, ""
    cls = getattr(tf, arch, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ModelLoadError(
            f"{path / CONFIG}: architecture {arch!r} is not known to transformers "
            f"{tf.__version__} (a newer transformers may have it, or it needs the "
            "checkpoint's own code: auto_map + --trust)"
        )
    return cls, arch


def _positions(cfg: Mapping[str, Any]) -> int | None:
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "max_seq_len"):
        v = cfg.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _vocab(cfg: Mapping[str, Any]) -> int | None:
    v = cfg.get("vocab_size")
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def check_sample(source: str, cfg: Mapping[str, Any], x: torch.Tensor, where: str) -> None:
    """:class:`ModelLoadError` when one sample ``x`` ([1, T] or [T]) cannot feed the model
    of ``cfg``: not integer token ids, longer than its positions, ids out of the vocabulary.
    ``where`` names what ``x`` came from (a data file's ``x``, ``--input-shape``)."""
    want = f"int64 token ids [1, T] with T <= {_positions(cfg) or 'any'}"
    vocab = _vocab(cfg)
    if vocab:
        want += f" and ids in 0..{vocab - 1}"
    shape, dtype = tuple(x.shape), str(x.dtype).removeprefix("torch.")
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise ModelLoadError(
            f"{where}: sample of shape {shape[1:]} {dtype} does not fit {source}: it takes {want}"
        )
    if x.dim() != 2:
        raise ModelLoadError(
            f"{where}: sample of shape {shape[1:]} {dtype} does not fit {source}: it takes "
            f"{want} (each sample one row of tokens)"
        )
    pos = _positions(cfg)
    if pos is not None and x.shape[1] > pos:
        raise ModelLoadError(
            f"{where}: sample of {x.shape[1]} tokens does not fit {source}: it takes {want}"
        )
    if x.numel() and vocab is not None:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= vocab:
            raise ModelLoadError(
                f"{where}: token ids {lo}..{hi} do not fit {source}: it takes {want}"
            )


def _example(
    path: Path,
    cfg: Mapping[str, Any],
    input_shape: Sequence[int] | None,
    input_dtype: str | torch.dtype | None,
) -> torch.Tensor:
    from quantviz.model.inputs import parse_dtype

    vocab = _vocab(cfg) or 2
    if input_shape is None:
        t = min(DEFAULT_TOKENS, _positions(cfg) or DEFAULT_TOKENS)
        return (torch.arange(t, dtype=torch.int64) % vocab).reshape(1, t)
    shape = tuple(input_shape)
    if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ModelLoadError(f"input_shape: must be a list of positive integers, got {shape!r}")
    dtype = parse_dtype("input_shape", input_dtype) if input_dtype is not None else torch.int64
    want = (1, *shape[1:])
    if len(want) == 1:
        want = (1, shape[0])
    x = torch.zeros(want, dtype=dtype)
    if not dtype.is_floating_point:
        x = (torch.arange(x.numel(), dtype=torch.int64) % vocab).reshape(want).to(dtype)
    check_sample(str(path), cfg, x, f"input_shape {list(shape)}")
    return x


def load_hf(
    path: Path,
    source: str,
    *,
    trust: bool = False,
    input_shape: Sequence[int] | None = None,
    input_dtype: str | torch.dtype | None = None,
) -> ModelHandle:
    """Open the checkpoint folder ``path`` (see the module docstring); layers not yet
    discovered (:func:`quantviz.model.load_model` does that)."""
    cfg = read_config(path)
    files = weight_files(path)
    tf = _import_transformers(path)
    cls, arch = _model_class(path, cfg, trust, tf)
    example = _example(path, cfg, input_shape, input_dtype)
    try:
        with _offline():
            module = cls.from_pretrained(
                str(path), dtype="auto", local_files_only=True, trust_remote_code=trust
            )
    except (ModelLoadError, MemoryError):
        raise
    except Exception as exc:
        text = str(exc)
        if "does not recognize this architecture" in text or "model_type" in text:
            mt = cfg.get("model_type")
            raise ModelLoadError(
                f"{path / CONFIG}: model_type {mt!r} is not known to transformers "
                f"{tf.__version__}: {brief(exc, 200)}"
            ) from None
        raise ModelLoadError(
            f"{path}: transformers could not load {arch or 'the model'}: {brief(exc)}"
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"{path}: {arch} did not give a torch module")
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    mcfg = getattr(module, "config", None)
    if mcfg is not None and hasattr(mcfg, "use_cache"):
        mcfg.use_cache = False  # one forward pass per batch: no key/value cache to keep
    task = task_of(arch or type(module).__name__)
    arch = type(module).__name__ if not arch or arch.startswith("Auto") else arch
    tok = path / TOKENIZER
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in module.parameters()})
    meta: dict[str, Any] = {
        "file_kind": "huggingface",
        "architecture": arch,
        "model_type": cfg.get("model_type"),
        "dtype": ",".join(dtypes),
        "weight_files": [f.name for f in files],
        "vocab_size": _vocab(cfg),
        "max_positions": _positions(cfg),
        "hf_config": dict(cfg),
    }
    if task in _CLASSES_LAST:
        meta["class_dim"] = -1  # [batch, tokens, vocab / labels / features]
    return ModelHandle(
        source=source,
        name=path.name or str(path),
        module=module,
        layers=[],
        example_input=example,
        flavour="nn",
        meta=meta,
        task=task,
        tokenizer_path=str(tok) if tok.is_file() else None,
    )
