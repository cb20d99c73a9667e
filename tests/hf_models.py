"""Tiny Hugging Face checkpoints built from configs (random init, nothing downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

VOCAB = 128
HIDDEN = 64
LAYERS = 2
POSITIONS = 64


def build(kind: str, **over: Any) -> Any:
    """A random-init transformers model of ``kind`` (gpt2, llama, opt, bert), eval mode."""
    import transformers as tf

    torch.manual_seed(0)
    if kind == "gpt2":
        cfg: Any = tf.GPT2Config(
            n_layer=LAYERS,
            n_embd=HIDDEN,
            n_head=4,
            vocab_size=VOCAB,
            n_positions=POSITIONS,
            bos_token_id=0,
            eos_token_id=0,
        )
        cls: Any = tf.GPT2LMHeadModel
    elif kind == "llama":
        cfg = tf.LlamaConfig(
            hidden_size=HIDDEN,
            intermediate_size=128,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=VOCAB,
            max_position_embeddings=POSITIONS,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
        )
        cls = tf.LlamaForCausalLM
    elif kind == "opt":
        cfg = tf.OPTConfig(
            hidden_size=HIDDEN,
            ffn_dim=128,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            vocab_size=VOCAB,
            max_position_embeddings=POSITIONS,
            word_embed_proj_dim=HIDDEN,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=1,
        )
        cls = tf.OPTForCausalLM
    elif kind == "bert":
        cfg = tf.BertConfig(
            hidden_size=HIDDEN,
            intermediate_size=128,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            vocab_size=VOCAB,
            max_position_embeddings=POSITIONS,
            pad_token_id=0,
        )
        cls = tf.BertModel
    else:
        raise ValueError(kind)
    for k, v in over.items():
        setattr(cfg, k, v)
    model = cls(cfg)
    return model.eval()


def save(kind: str, folder: Path, *, shard: str | None = None, **over: Any) -> Path:
    """``save_pretrained`` of a tiny ``kind`` model into ``folder`` (sharded at ``shard``)."""
    model = build(kind, **over)
    kwargs = {} if shard is None else {"max_shard_size": shard}
    model.save_pretrained(str(folder), **kwargs)
    return folder


def expected_layers(kind: str, tied: bool) -> list[str]:
    """The quantizable layers of a tiny ``kind`` model, written out by hand."""
    out: list[str] = []
    if kind == "gpt2":
        out += ["transformer.wte", "transformer.wpe"]
        for i in range(LAYERS):
            b = f"transformer.h.{i}"
            out += [f"{b}.attn.c_attn", f"{b}.attn.c_proj", f"{b}.mlp.c_fc", f"{b}.mlp.c_proj"]
    elif kind == "llama":
        out.append("model.embed_tokens")
        for i in range(LAYERS):
            b = f"model.layers.{i}"
            out += [f"{b}.self_attn.{p}_proj" for p in "qkvo"]
            out += [f"{b}.mlp.{p}_proj" for p in ("gate", "up", "down")]
    elif kind == "opt":
        out += ["model.decoder.embed_tokens", "model.decoder.embed_positions"]
        for i in range(LAYERS):
            b = f"model.decoder.layers.{i}"
            out += [f"{b}.self_attn.{p}_proj" for p in ("k", "v", "q", "out")]
            out += [f"{b}.fc1", f"{b}.fc2"]
    elif kind == "bert":
        out += [f"embeddings.{e}_embeddings" for e in ("word", "position", "token_type")]
        for i in range(LAYERS):
            b = f"encoder.layer.{i}"
            out += [f"{b}.attention.self.{p}" for p in ("query", "key", "value")]
            out += [f"{b}.attention.output.dense", f"{b}.intermediate.dense", f"{b}.output.dense"]
        out.append("pooler.dense")
    if kind != "bert" and not tied:
        out.append("lm_head")
    return out
