"""Model shapes for the demo pair and the tiny test checkpoints.

On a CPU at batch 1 a decode step of a small model costs mostly per-layer overhead (dozens of small
kernels per layer), so the draft's cost advantage comes from its layer count: the target is deep, the
draft has one layer. The draft keeps the target's width so it can start from the target's embedding,
final norm and one of its layers, which is what makes it agree with the target so often.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase


@dataclass(frozen=True, slots=True)
class ModelShape:
    """The few numbers that distinguish our Llama models from each other."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int = 2048


# ~7.9M parameters: deep enough to be an order of magnitude slower per token than the draft,
# small enough to train to plausible Python in about two minutes on 2 cores.
TARGET_SHAPE = ModelShape(hidden_size=256, num_layers=8, num_heads=4, intermediate_size=768)
# ~1.8M parameters: one layer of the target's width.
DRAFT_SHAPE = ModelShape(hidden_size=256, num_layers=1, num_heads=4, intermediate_size=768)


def llama_config(shape: ModelShape, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    """A LlamaConfig for `shape` whose vocabulary and special ids come from `tokenizer`."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads,
        max_position_embeddings=shape.max_position_embeddings,
        # untied: the input embedding trains at a much higher learning rate than the output head
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def generation_config(tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    """Greedy by default, stopping on eos: what `generate` and the engine read from the checkpoint."""
    return GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )


def new_model(shape: ModelShape, tokenizer: PreTrainedTokenizerBase) -> LlamaForCausalLM:
    """A randomly initialised model (the caller seeds torch) with its generation config attached."""
    model = LlamaForCausalLM(llama_config(shape, tokenizer))
    model.generation_config = generation_config(tokenizer)
    return model


def greedy_generate(model: LlamaForCausalLM, prompts: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Exactly `new_tokens` greedy tokens after each of the equal-length `prompts`: [N, P + new_tokens]."""
    out = model.generate(
        prompts,
        attention_mask=torch.ones_like(prompts),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
    )
    assert isinstance(out, torch.Tensor)
    return out


def save_checkpoint(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> Path:
    """save_pretrained for both, so the directory loads on its own with `from_pretrained`; returns it."""
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def parameter_count(model: LlamaForCausalLM) -> int:
    """All parameters, embedding and head included."""
    return sum(p.numel() for p in model.parameters())
