"""Token data for causal language models: ``input_ids`` ``[N, T]`` or a text file.

A causal LM (``handle.is_causal_lm``) is evaluated on token sequences:

* an ``.npz`` / ``.pt`` holding ``input_ids`` (or ``x``) — integer token ids ``[N, T]``, one
  sequence per row — and optionally ``calib_input_ids`` for activation calibration;
* a ``.txt`` file (UTF-8), tokenized with the model's own ``tokenizer.json`` (the
  ``tokenizers`` package, from the ``hf`` extra) and cut into consecutive windows of
  ``seq_len`` tokens (the CLI's ``--seq-len``; default :data:`DEFAULT_SEQ_LEN`, at most the
  model's positions); the tail shorter than a window is dropped;
* ``sample:tiny_lm`` — the held-out split of the bundled LM (``tiny_lm_eval.npz``).

:func:`quantviz.data.load_data` reads them (for a causal LM handle) with the helpers here.

With ``seq_len`` an ``.npz``'s rows are cut into windows of that length too. Calibration
uses ``calib_input_ids`` if present, else the first sequences holding up to
:data:`CALIB_TOKENS` tokens. Every problem — ids outside the vocabulary, sequences longer
than the model's positions, no sequence at all — is a :class:`DataError` naming the file,
the field and the offending sequence.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from quantviz.data.types import DataError
from quantviz.model.limits import format_bytes, too_big

if TYPE_CHECKING:
    from quantviz.model.handle import ModelHandle

__all__ = [
    "BUNDLED_TOKENS",
    "CALIB_TOKENS",
    "DEFAULT_SEQ_LEN",
    "TEXT_SUFFIXES",
    "calibration",
    "check_seq_len",
    "check_tokens",
    "tokenize_text",
    "windows",
]

#: window length of a tokenized text file when ``seq_len`` is not given
DEFAULT_SEQ_LEN = 128
#: tokens of the default calibration set (the first whole sequences up to this many)
CALIB_TOKENS = 16384
#: file suffixes read as text (tokenized with the model's tokenizer)
TEXT_SUFFIXES = (".txt", ".text")
BUNDLED_TOKENS = {"tiny_lm": "tiny_lm_eval.npz"}
#: bytes of token ids per byte of text, at most (one int64 id per byte), for the load limit
_TEXT_FACTOR = 8


def check_seq_len(seq_len: int | None) -> None:
    if seq_len is None:
        return
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise DataError(
            f"seq_len (--seq-len): must be an integer >= 2 (tokens per sequence), got {seq_len!r}"
        )


def check_tokens(src: str, field: str, ids: torch.Tensor, handle: ModelHandle) -> torch.Tensor:
    """``ids`` as int64 ``[N, T]`` after checking it fits ``handle``'s vocabulary and positions.

    :class:`DataError` naming ``src`` and ``field`` otherwise.
    """
    where = f"{src}: {field}"
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise DataError(f"{where}: token ids must be integers, got {ids.dtype}")
    if ids.dim() != 2:
        raise DataError(
            f"{where}: must be [N, T] (sequences x tokens), got shape {tuple(ids.shape)}"
        )
    n, t = int(ids.shape[0]), int(ids.shape[1])
    if n == 0 or t == 0:
        raise DataError(f"{where}: empty (shape {tuple(ids.shape)}): no token sequence")
    if t < 2:
        raise DataError(
            f"{where}: sequences of {t} token predict nothing; perplexity needs at least 2 "
            "tokens per sequence"
        )
    max_pos = handle.meta.get("max_positions")
    if max_pos and t > max_pos:
        raise DataError(
            f"{where}: sequences of {t} tokens are longer than the {max_pos} positions of "
            f"{handle.name} (shape {tuple(ids.shape)}); use --seq-len {max_pos} or shorter"
        )
    ids = ids.to(torch.int64)
    vocab = int(handle.meta.get("vocab_size") or 0)
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or (vocab and hi >= vocab):
        bad = (ids < 0) if lo < 0 else (ids >= vocab)
        seq, pos = (int(v) for v in bad.nonzero()[0])
        limit = f"0..{vocab - 1}" if vocab else ">= 0"
        raise DataError(
            f"{where}: token id {int(ids[seq, pos])} (sequence {seq}, position {pos}) is "
            f"outside the vocabulary of {handle.name} ({limit}); ids span {lo}..{hi}"
        )
    return ids


def windows(ids: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Rows of ``ids`` [N, T] cut into consecutive windows of ``seq_len`` (tails dropped)."""
    n, t = int(ids.shape[0]), int(ids.shape[1])
    k = t // seq_len
    return ids[:, : k * seq_len].reshape(n * k, seq_len)


def calibration(ids: torch.Tensor) -> torch.Tensor:
    n = max(1, CALIB_TOKENS // int(ids.shape[1]))
    return ids[:n]


def tokenize_text(path: Path, handle: ModelHandle, seq_len: int | None) -> torch.Tensor:
    if not handle.tokenizer_path:
        raise DataError(
            f"{path}: a text file is tokenized with the model's tokenizer.json, and "
            f"{handle.name} has none; give token ids as an .npz with input_ids [N, T]"
        )
    size = path.stat().st_size
    msg = too_big(f"{path}: {format_bytes(size)} of text", size, factor=_TEXT_FACTOR)
    if msg:
        raise DataError(msg)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not text.strip():
        raise DataError(f"{path}: empty: the text file holds no text to evaluate on")
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise DataError(
            f"{path}: tokenizing text needs the tokenizers package "
            f"(pip install 'quantviz[hf]'): {exc}"
        ) from None
    try:
        tok = Tokenizer.from_file(handle.tokenizer_path)
    except Exception as exc:
        raise DataError(f"{handle.tokenizer_path}: not a readable tokenizer.json ({exc})") from None
    ids = torch.tensor(tok.encode(text).ids, dtype=torch.int64)
    max_pos = handle.meta.get("max_positions")
    length = seq_len or min(DEFAULT_SEQ_LEN, max_pos or DEFAULT_SEQ_LEN)
    if len(ids) < length:
        raise DataError(
            f"{path}: {len(ids)} tokens, fewer than one window of {length} (--seq-len); "
            "give more text or a shorter --seq-len"
        )
    return windows(ids[None], length)
