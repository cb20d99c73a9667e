"""Causal language models: recognising one, and what evaluation needs to know about it.

A model is a **causal LM** when its module is a ``transformers`` model that generates text
(an instance of ``transformers.GenerationMixin``, which every ``*ForCausalLM`` class is)
and is not an encoder-decoder (``config.is_encoder_decoder`` false). Nothing else is
guessed from output shapes: a token classifier also maps ``[B, T]`` ids to ``[B, T, C]``
logits. :func:`mark_causal_lm` marks a :class:`~quantviz.model.handle.ModelHandle` as one
(``task = "causal_lm"``; the Hugging Face folder loader does the same), after which the
evaluation metric is perplexity on token data (:mod:`quantviz.data.tokens`).

The vocabulary size and the number of positions come from the model's ``config``
(``vocab_size``; ``max_position_embeddings`` / ``n_positions`` / ``max_seq_len``...).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from quantviz.model.handle import CAUSAL_LM, ModelHandle

__all__ = [
    "CAUSAL_LM",
    "EXAMPLE_TOKENS",
    "handle_from_module",
    "is_causal_lm",
    "lm_example_input",
    "max_positions",
    "vocab_size",
]

#: tokens in the example input of a causal LM (layer discovery runs one forward on it)
EXAMPLE_TOKENS = 8
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "n_ctx", "seq_length")


def is_causal_lm(module: nn.Module) -> bool:
    """True for a ``transformers`` text-generating decoder (see the module doc)."""
    if "transformers" not in sys.modules:  # a transformers model imports it first
        return False
    try:
        from transformers import GenerationMixin
    except ImportError:  # pragma: no cover - a broken transformers install
        return False
    if not isinstance(module, GenerationMixin):
        return False
    config = getattr(module, "config", None)
    return not bool(getattr(config, "is_encoder_decoder", False))


def _text_config(module: nn.Module) -> Any:
    config = getattr(module, "config", None)
    get_text = getattr(config, "get_text_config", None)
    if callable(get_text):
        try:
            return get_text()
        except Exception:  # pragma: no cover - an odd config: use it as it is
            return config
    return config


def vocab_size(module: nn.Module) -> int | None:
    """The model's vocabulary size from its config (``None`` if it does not say)."""
    v = getattr(_text_config(module), "vocab_size", None)
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def max_positions(module: nn.Module) -> int | None:
    """The longest sequence the model takes, from its config (``None`` if it does not say)."""
    config = _text_config(module)
    for key in _POSITION_KEYS:
        v = getattr(config, key, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return int(v)
    return None


def lm_example_input(module: nn.Module) -> torch.Tensor:
    """``[1, EXAMPLE_TOKENS]`` int64 token ids (0) — the example input of a causal LM."""
    n = min(EXAMPLE_TOKENS, max_positions(module) or EXAMPLE_TOKENS)
    return torch.zeros(1, n, dtype=torch.int64)


def mark_causal_lm(handle: ModelHandle, tokenizer_path: str | Path | None = None) -> ModelHandle:
    """Mark ``handle`` as a causal LM: ``task``, ``tokenizer_path`` and ``meta``
    (``vocab_size``, ``max_positions``; no ``class_dim``: the logits stay as they are).
    Turns the model's KV cache off (``use_cache``): evaluation runs whole sequences, and a
    cache would only cost memory."""
    mod = handle.module
    handle.task = CAUSAL_LM
    # [batch, tokens, vocab] next-token logits are read as they are (no class dim to move)
    handle.meta.pop("class_dim", None)
    if tokenizer_path is not None:
        handle.tokenizer_path = str(tokenizer_path)
    handle.meta["vocab_size"] = vocab_size(mod)
    handle.meta["max_positions"] = max_positions(mod)
    config = getattr(mod, "config", None)
    if config is not None and hasattr(config, "use_cache"):
        config.use_cache = False
    return handle


def handle_from_module(
    module: nn.Module,
    source: str = "memory",
    name: str = "model",
    *,
    tokenizer_path: str | Path | None = None,
    default_data: str | None = None,
    example: torch.Tensor | None = None,
) -> ModelHandle:
    """A :class:`ModelHandle` of an in-memory module, layers discovered, as ``load_model``
    builds it; a causal LM (:func:`is_causal_lm`) is marked as one with its example input
    ``[1, 8]`` token ids."""
    from quantviz.model.layers import discover_layers

    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    lm = is_causal_lm(module)
    if example is None:
        if not lm:
            raise ValueError(f"{source}: give the example input of a model that is not a causal LM")
        example = lm_example_input(module)
    handle = ModelHandle(source, name, module, [], example, default_data=default_data)
    if lm:
        mark_causal_lm(handle, tokenizer_path)
    with torch.no_grad():
        handle.layers = discover_layers(module, example)
    return handle
