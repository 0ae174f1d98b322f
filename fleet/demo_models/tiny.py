"""Tiny random-init checkpoints for tests: real HF-format directories, written in well under a second.

They load the way users load models (`from_pretrained`), so tests exercise the real load path without
waiting for a trained model. Checkpoints built with the same tokenizer share its vocabulary, so a tiny
target and a tiny draft can be paired for speculative-decoding tests.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from fleet.demo_models.architecture import ModelShape, new_model, save_checkpoint
from fleet.demo_models.tokenizer import tiny_tokenizer


def _load_tokenizer(vocab_from: Path | None) -> PreTrainedTokenizerFast:
    """The tokenizer saved in `vocab_from`, or the cached tiny test tokenizer."""
    if vocab_from is None:
        return tiny_tokenizer()
    tokenizer = AutoTokenizer.from_pretrained(vocab_from)
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise TypeError(f"{vocab_from} does not hold a fast tokenizer")
    return tokenizer


def build_tiny_checkpoint(
    out_dir: Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_from: Path | None = None,
) -> Path:
    """Write a random-init LlamaForCausalLM and its tokenizer to `out_dir` (save_pretrained) and return it.

    `vocab_from` is a checkpoint directory whose tokenizer to reuse; by default the small test tokenizer
    (trained once per process on a slice of stdlib) is used, which gives every default call one vocab.
    """
    tokenizer = _load_tokenizer(vocab_from)
    shape = ModelShape(
        hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, intermediate_size=2 * hidden_size
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = new_model(shape, tokenizer)
    return save_checkpoint(model, tokenizer, out_dir)
