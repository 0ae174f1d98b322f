"""Training: the target on next-token prediction, then the draft distilled from the target's logits.

Everything random draws from one seed: model init inside a forked torch RNG, batch positions from a
dedicated generator, a fixed thread count. Same seed, same machine, same weights.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
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
    embedding_lr_scale: float = 1.0  # the tied embedding must grow ~20x from its init: a higher lr gets it there

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    return torch.stack([stream[s : s + seq_len + 1] for s in starts.tolist()])


def lr_at(step: int, recipe: Recipe) -> float:
    """Linear warmup, then cosine decay to `min_lr_ratio` of the peak."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return recipe.lr * (recipe.min_lr_ratio + (1.0 - recipe.min_lr_ratio) * cosine)


def _optimizer(model: LlamaForCausalLM, recipe: Recipe) -> torch.optim.Optimizer:
    """AdamW: weight decay on layer matrices only; the embedding gets its own learning-rate scale."""
    embedding = model.get_input_embeddings().weight
    params = [p for p in model.parameters() if p is not embedding]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": recipe.weight_decay, "scale": 1.0},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "scale": 1.0},
        {"params": [embedding], "weight_decay": 0.0, "scale": recipe.embedding_lr_scale},
    ]
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.95), foreach=False)


LossFn = Callable[[torch.Tensor], torch.Tensor]


def _run(
    model: LlamaForCausalLM, loss_fn: LossFn, stream: torch.Tensor, recipe: Recipe, seed: int, label: str,
    *, bf16: bool, progress: bool,
) -> list[float]:
    """The shared loop: sample a batch, compute `loss_fn(batch)`, step; return the loss per step."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = _optimizer(model, recipe)
    model.train()
    losses: list[float] = []
    bar = tqdm(range(recipe.steps), desc=label, disable=not progress, leave=True)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, recipe) * group["scale"]
        batch = sample_batch(stream, generator, recipe.batch_size, recipe.seq_len)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}", refresh=False)
    model.eval()
    return losses


def zero_init_residual_outputs(model: LlamaForCausalLM) -> None:
    """Zero the attention/MLP output projections and the head so each layer starts as the identity.

    A short training run then spends no steps undoing random residual noise: with the usual init the
    loss sits at the unigram level for a hundred or more steps, which is most of a CPU build's budget.
    """
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.get_output_embeddings().weight.zero_()


def train_target(
    model: LlamaForCausalLM, stream: torch.Tensor, recipe: Recipe, *, seed: int, bf16: bool, progress: bool
) -> list[float]:
    """Next-token cross-entropy on random windows of the stream."""

    def loss_fn(batch: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=batch[:, :-1]).logits.float()  # [B, T, V]
        return F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())

    return _run(model, loss_fn, stream, recipe, seed, "target", bf16=bf16, progress=progress)


def init_draft_from_target(draft: LlamaForCausalLM, target: LlamaForCausalLM, layers: list[int]) -> None:
    """Copy the target's embedding, head, final norm and the chosen layers into the same-width draft.

    The draft then starts as the target with its other layers skipped (an early-exit model): its
    predictions already resemble the target's before distillation begins.
    """
    with torch.no_grad():
        draft.model.embed_tokens.weight.copy_(target.model.embed_tokens.weight)
        draft.lm_head.weight.copy_(target.lm_head.weight)
        draft.model.norm.load_state_dict(target.model.norm.state_dict())
        for draft_layer, source in zip(draft.model.layers, layers, strict=True):
            draft_layer.load_state_dict(target.model.layers[source].state_dict())


def distill_draft(
    draft: LlamaForCausalLM, target: LlamaForCausalLM, stream: torch.Tensor, recipe: Recipe,
    *, seed: int, bf16: bool, progress: bool, hard_weight: float = 0.1,
) -> list[float]:
    """KL(target || draft) on the same windows, plus a little ground-truth cross-entropy."""
    target.eval()

    def loss_fn(batch: torch.Tensor) -> torch.Tensor:
        inputs = batch[:, :-1]
        with torch.no_grad():
            teacher = F.log_softmax(target(input_ids=inputs).logits.float(), dim=-1).flatten(0, 1)
        student_logits = draft(input_ids=inputs).logits.float().flatten(0, 1)  # [B*T, V]
        student = F.log_softmax(student_logits, dim=-1)
        soft = F.kl_div(student, teacher, log_target=True, reduction="batchmean")
        hard = F.cross_entropy(student_logits, batch[:, 1:].flatten())
        return soft + hard_weight * hard

    return _run(draft, loss_fn, stream, recipe, seed + 1, "draft", bf16=bf16, progress=progress)
