"""Training: the target on next-token prediction, with the draft distilled from its logits alongside.

Everything random draws from one seed: model init inside a forked torch RNG, batch positions from a
dedicated generator, a fixed thread count. Same seed, same machine, same weights.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast


@dataclass(frozen=True, slots=True)
class Recipe:
    """Optimisation settings for one training phase."""

    steps: int
    batch_size: int
    seq_len: int
    lr: float
    warmup_steps: int
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    embedding_lr_scale: float = 1.0  # the input embedding must grow ~20x from its init: a higher lr gets it there


@contextlib.contextmanager
def seeded(seed: int, num_threads: int) -> Iterator[None]:
    """Seed torch and pin the thread count for a block, restoring the caller's RNG and threads after."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(previous_threads)


def bf16_autocast_is_fast() -> bool:
    """bf16 autocast triples training speed on CPUs with native bf16 and slows down the rest."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def encode_documents(tokenizer: PreTrainedTokenizerFast, documents: list[str]) -> torch.Tensor:
    """All documents (already carrying bos/eos markers) as one flat token stream."""
    encodings = tokenizer.backend_tokenizer.encode_batch(documents, add_special_tokens=False)
    ids = [token for encoding in encodings for token in encoding.ids]
    return torch.tensor(ids, dtype=torch.long)


def sample_batch(stream: torch.Tensor, generator: torch.Generator, batch_size: int, seq_len: int) -> torch.Tensor:
    """`batch_size` random windows of `seq_len + 1` tokens: [B, T+1]."""
    starts = torch.randint(0, stream.numel() - seq_len - 1, (batch_size,), generator=generator)
    windows = [stream[s : s + seq_len + 1] for s in starts.tolist()]
    return torch.stack(windows) if windows else stream.new_empty((0, seq_len + 1))


def lr_at(step: int, recipe: Recipe) -> float:
    """Linear warmup, then cosine decay to `min_lr_ratio` of the peak."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return recipe.lr * (recipe.min_lr_ratio + (1.0 - recipe.min_lr_ratio) * cosine)


def param_groups(model: LlamaForCausalLM, recipe: Recipe, lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """Weight decay on layer matrices only; the input embedding gets its own learning-rate scale."""
    embedding = model.get_input_embeddings().weight
    params = [p for p in model.parameters() if p is not embedding]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": recipe.weight_decay, "scale": lr_scale},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "scale": lr_scale},
        {"params": [embedding], "weight_decay": 0.0, "scale": lr_scale * recipe.embedding_lr_scale},
    ]


# A loss function returns what to backpropagate and the number to report for the step.
LossFn = Callable[[torch.Tensor], tuple[torch.Tensor, float]]
Sampler = Callable[[torch.Generator], torch.Tensor]


def run_steps(
    groups: list[dict[str, Any]],
    models: list[LlamaForCausalLM],
    loss_fn: LossFn,
    sampler: Sampler,
    recipe: Recipe,
    seed: int,
    label: str,
    *,
    bf16: bool,
    progress: bool,
) -> list[float]:
    """The loop shared by target and draft training: draw a batch, backpropagate, step; report losses."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.95), foreach=False)
    with _training_mode(models):
        return _steps(optimizer, models, loss_fn, sampler, recipe, generator, label, bf16=bf16, progress=progress)


@contextlib.contextmanager
def _training_mode(models: list[LlamaForCausalLM]) -> Iterator[None]:
    """train() with eager attention for the block, then eval() with the models' own attention back.

    At these sequence lengths the CPU SDPA kernel's backward pass costs more than the plain matmuls.
    """
    previous = [model.config._attn_implementation for model in models]
    for model in models:
        model.set_attn_implementation("eager")
        model.train()
    try:
        yield
    finally:
        for model, implementation in zip(models, previous, strict=True):
            model.set_attn_implementation(implementation)
            model.eval()  # type: ignore[no-untyped-call]


def _steps(
    optimizer: torch.optim.Optimizer,
    models: list[LlamaForCausalLM],
    loss_fn: LossFn,
    sampler: Sampler,
    recipe: Recipe,
    generator: torch.Generator,
    label: str,
    *,
    bf16: bool,
    progress: bool,
) -> list[float]:
    """The optimisation steps of `run_steps`."""
    losses: list[float] = []
    bar = tqdm(range(recipe.steps), desc=label, disable=not progress, leave=True)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, recipe) * group["scale"]
        batch = sampler(generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, reported = loss_fn(batch)
        loss.backward()  # type: ignore[no-untyped-call]
        for model in models:  # clipped one model at a time: a joint norm would couple them
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(reported)
        bar.set_postfix(loss=f"{tail_mean(losses):.3f}", refresh=False)
    return losses


def tail_mean(losses: list[float], n: int = 20) -> float:
    """Mean of the last `n` training losses (a single step is noisy)."""
    tail = losses[-n:]
    return sum(tail) / max(1, len(tail))


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per position, averaged: [B, T, V] x [B, T, V] -> scalar."""
    teacher = F.log_softmax(teacher_logits.detach().float(), dim=-1).flatten(0, 1)
    student = F.log_softmax(student_logits.float(), dim=-1).flatten(0, 1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean")


def zero_init_residual_outputs(model: LlamaForCausalLM) -> None:
    """Zero the attention/MLP output projections and the head so each layer starts as the identity.

    A short training run then spends no steps undoing random residual noise: with the usual init the
    loss sits at the unigram level for a hundred or more steps, which is most of a CPU build's budget.
    """
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()


def train_target(
    model: LlamaForCausalLM,
    stream: torch.Tensor,
    recipe: Recipe,
    *,
    seed: int,
    bf16: bool,
    progress: bool,
    draft: LlamaForCausalLM | None = None,
    draft_lr: float | None = None,
) -> list[float]:
    """Next-token cross-entropy on random windows of the stream.

    With a `draft`, the draft is distilled from the target's logits in the same steps: the target's
    forward pass, the expensive part of distillation, is already paid for by its own training.
    """
    groups = param_groups(model, recipe)
    if draft is not None:
        groups += param_groups(draft, recipe, lr_scale=(draft_lr or recipe.lr) / recipe.lr)

    def loss_fn(batch: torch.Tensor) -> tuple[torch.Tensor, float]:
        logits = model(input_ids=batch[:, :-1]).logits  # [B, T, V]
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
        reported = loss.item()
        if draft is not None:
            loss = loss + distillation_loss(draft(input_ids=batch[:, :-1]).logits, logits)
        return loss, reported

    def sampler(generator: torch.Generator) -> torch.Tensor:
        return sample_batch(stream, generator, recipe.batch_size, recipe.seq_len)

    models = [model] if draft is None else [model, draft]
    return run_steps(groups, models, loss_fn, sampler, recipe, seed, "target", bf16=bf16, progress=progress)
