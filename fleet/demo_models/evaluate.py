"""Measurements recorded with the build: do the models do what speculative decoding needs?

Two numbers decide whether drafting pays: how often the draft's greedy token equals the target's, and
how much cheaper a draft decode step is than a target decode step at batch 1 with a KV cache.
"""

from __future__ import annotations

import time

import torch
from transformers import DynamicCache, LlamaForCausalLM, PreTrainedTokenizerFast


@torch.inference_mode()
def agreement(
    target: LlamaForCausalLM, draft: LlamaForCausalLM, stream: torch.Tensor, *, windows: int, seq_len: int
) -> float:
    """Fraction of positions in held-out windows where both models' argmax tokens are equal."""
    usable = (stream.numel() - 1) // seq_len
    count = min(windows, usable)
    batch = stream[: count * seq_len].view(count, seq_len)
    same = (target(input_ids=batch).logits.argmax(-1) == draft(input_ids=batch).logits.argmax(-1)).float()
    return float(same.mean())


@torch.inference_mode()
def greedy_acceptance(
    target: LlamaForCausalLM, draft: LlamaForCausalLM, prompts: list[torch.Tensor], *, new_tokens: int
) -> float:
    """Agreement along the target's own greedy continuations: what a speculative decoder sees."""
    matches = total = 0
    for prompt in prompts:
        sequence = target.generate(
            prompt.unsqueeze(0), attention_mask=torch.ones_like(prompt).unsqueeze(0),
            max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
        )
        start = prompt.numel() - 1  # logits at position i predict token i + 1
        wanted = sequence[0, prompt.numel() :]
        drafted = draft(input_ids=sequence[:, :-1]).logits[0, start:].argmax(-1)
        matches += int((drafted == wanted).sum())
        total += wanted.numel()
    return matches / max(1, total)


@torch.inference_mode()
def decode_ms_per_token(model: LlamaForCausalLM, *, prompt_len: int = 64, steps: int = 64, repeats: int = 3) -> float:
    """Best-of-`repeats` wall time of one batch-1 decode step with a KV cache, in milliseconds."""
    vocab = model.config.vocab_size
    prompt = (torch.arange(prompt_len) * 7919 % vocab).unsqueeze(0)
    best = float("inf")
    for _ in range(repeats):
        cache = DynamicCache(config=model.config)
        token = model(input_ids=prompt, past_key_values=cache, use_cache=True).logits[:, -1:].argmax(-1)
        start = time.perf_counter()
        for _ in range(steps):
            token = model(input_ids=token, past_key_values=cache, use_cache=True).logits[:, -1:].argmax(-1)
        best = min(best, (time.perf_counter() - start) / steps)
    return best * 1000.0


@torch.inference_mode()
def greedy_sample(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompt: str, new_tokens: int) -> str:
    """The model's greedy continuation of `prompt` (special tokens kept, so an eos shows)."""
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False)
    return str(tokenizer.decode(out[0, ids.shape[1] :]))
