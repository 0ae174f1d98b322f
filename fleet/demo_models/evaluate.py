"""Measurements recorded with the build: do the models do what speculative decoding needs?

Two numbers decide whether drafting pays: how often the draft's greedy token equals the target's, and
how much cheaper a draft decode step is than a target decode step at batch 1 with a KV cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache, LlamaForCausalLM, PreTrainedTokenizerFast

from fleet.demo_models.architecture import greedy_generate


@dataclass(frozen=True, slots=True)
class Heldout:
    """Both models on the same held-out windows."""

    loss_target: float  # mean next-token cross-entropy, nats
    loss_draft: float
    agreement: float  # fraction of positions where both models' argmax tokens are equal


@torch.inference_mode()
def heldout_scores(
    target: LlamaForCausalLM, draft: LlamaForCausalLM, stream: torch.Tensor, *, windows: int, seq_len: int
) -> Heldout:
    """Loss and argmax agreement on up to `windows` consecutive `seq_len`-token windows: one forward per model."""
    count = min(windows, (stream.numel() - 1) // seq_len)
    batch = stream[: count * seq_len].view(count, seq_len)
    target_logits = target(input_ids=batch).logits  # [N, T, V]
    draft_logits = draft(input_ids=batch).logits
    same = (target_logits.argmax(-1) == draft_logits.argmax(-1)).float()
    return Heldout(_next_token_loss(target_logits, batch), _next_token_loss(draft_logits, batch), float(same.mean()))


def _next_token_loss(logits: torch.Tensor, batch: torch.Tensor) -> float:
    """Cross-entropy of logits [N, T, V] at positions 0..T-2 against the tokens [N, T] at 1..T-1."""
    return float(F.cross_entropy(logits[:, :-1].flatten(0, 1), batch[:, 1:].flatten()))


@dataclass(frozen=True, slots=True)
class Acceptance:
    """How a greedy speculative decoder with this draft would fare on the target's own output."""

    agreement: float  # per position: draft argmax == target argmax, in the target's greedy continuations
    tokens_per_step: float  # tokens produced per target forward with `k` drafted tokens (1 .. k + 1)
    k: int


@torch.inference_mode()
def greedy_acceptance(
    target: LlamaForCausalLM, draft: LlamaForCausalLM, prompts: torch.Tensor, *, new_tokens: int, k: int = 4
) -> Acceptance:
    """Replay greedy speculative decoding on the target's continuations of `prompts` ([N, P]).

    With greedy verification the draft only ever drafts after accepted tokens, i.e. inside the target's
    own greedy sequence, so one teacher-forced draft pass over that sequence says exactly which drafts
    would have been accepted: from each step's start, the run of consecutive matches (at most k).
    """
    sequences = greedy_generate(target, prompts, new_tokens)
    start = prompts.shape[1] - 1  # logits at position i predict token i + 1
    drafted = draft(input_ids=sequences[:, :-1]).logits[:, start:].argmax(-1)  # [N, new_tokens]
    matches = drafted == sequences[:, prompts.shape[1] :]
    steps = produced = 0
    for row in matches.tolist():
        position = 0
        while position < len(row):
            accepted = 0
            while accepted < k and position + accepted < len(row) and row[position + accepted]:
                accepted += 1
            position += accepted + 1  # the accepted drafts plus the target's own token
            produced += accepted + 1
            steps += 1
    return Acceptance(float(matches.float().mean()), produced / max(1, steps), k)


@torch.inference_mode()
def decode_ms_per_token(model: LlamaForCausalLM, *, prompt_len: int = 64, steps: int = 64, repeats: int = 3) -> float:
    """Best-of-`repeats` wall time of one batch-1 decode step with a KV cache, in milliseconds."""
    vocab = model.config.vocab_size
    prompt = (torch.arange(prompt_len) * 7919 % vocab).unsqueeze(0)
    best = float("inf")
    for _ in range(repeats):
        cache = DynamicCache(config=model.config)
        token = model(input_ids=prompt, cache=cache, use_cache=True).logits[:, -1:].argmax(-1)
        start = time.perf_counter()
        for _ in range(steps):
            token = model(input_ids=token, cache=cache, use_cache=True).logits[:, -1:].argmax(-1)
        best = min(best, (time.perf_counter() - start) / steps)
    return best * 1000.0


@torch.inference_mode()
def greedy_sample(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompt: str, new_tokens: int) -> str:
    """The model's greedy continuation of `prompt` (special tokens kept, so an eos shows)."""
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    out = greedy_generate(model, ids, new_tokens)
    return str(tokenizer.decode(out[0, ids.shape[1] :]))
