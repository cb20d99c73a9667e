"""Tiny causal LMs built from transformers configs (random init; nothing is downloaded).

``tiny_llama`` / ``tiny_gpt2`` are importable no-argument factories, so tests can save
their state dicts and open them as ``weights.safetensors::tests.lm_models:tiny_llama``.
"""

from __future__ import annotations

import torch

VOCAB = 96
POSITIONS = 32


def tiny_llama(seed: int = 0):  # -> transformers.LlamaForCausalLM
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=POSITIONS,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(seed: int = 0):  # -> transformers.GPT2LMHeadModel
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_positions=POSITIONS,
        n_embd=64,
        n_layer=2,
        n_head=4,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg).eval()


def random_tokens(n: int = 6, t: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (n, t), generator=g)
