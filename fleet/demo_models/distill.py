"""Distillation of the draft: from the finished target's logits, partly on the target's own output.

The draft is what a speculative decoder runs k times per target step, so it must predict the target's
greedy token, not the text: it learns from the target's full distributions, and largely on sequences
the target generated, since greedy verification only ever drafts inside the target's own output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM

from fleet.demo_models.architecture import greedy_generate
from fleet.demo_models.train import Recipe, distillation_loss, param_groups, run_steps, sample_batch


def init_draft_from_target(draft: LlamaForCausalLM, target: LlamaForCausalLM, layers: list[int]) -> None:
    """Copy the target's embedding, head, final norm and the chosen layers into the same-width draft.

    The draft then starts as the target with its other layers skipped (an early-exit model): its
    predictions already resemble the target's before distillation begins. A draft MLP wider than the
    target's gets the copied units first and zero output weights for the rest (same function, more room).
    """
    with torch.no_grad():
        draft.model.embed_tokens.weight.copy_(target.model.embed_tokens.weight)
        draft.lm_head.weight.copy_(target.lm_head.weight)
        draft.model.norm.load_state_dict(target.model.norm.state_dict())
        for draft_layer, source in zip(draft.model.layers, layers, strict=True):
            _copy_layer(draft_layer, target.model.layers[source])


def _copy_layer(draft_layer: torch.nn.Module, source: torch.nn.Module) -> None:
    """Copy every weight of `source`; MLP weights into the leading slice when the draft's MLP is wider."""
    wanted = draft_layer.state_dict()
    for name, value in source.state_dict().items():
        slot = wanted[name]
        if name.endswith("mlp.down_proj.weight"):
            slot.zero_()
            slot[:, : value.shape[1]].copy_(value)
        else:
            slot[: value.shape[0]].copy_(value)


@torch.inference_mode()
def greedy_continuations(
    target: LlamaForCausalLM,
    stream: torch.Tensor,
    *,
    count: int,
    prompt_len: int,
    new_tokens: int,
    seed: int,
    batch_size: int = 128,
) -> torch.Tensor:
    """The target's greedy continuations of random stream prompts: [count, prompt_len + new_tokens].

    A speculative decoder drafts inside the target's own greedy output, which is more repetitive than
    human text; distilling on it too teaches the draft the contexts it will actually see.
    """
    generator = torch.Generator().manual_seed(seed)
    prompts = sample_batch(stream, generator, count, prompt_len - 1)
    chunks = []
    for start in range(0, count, batch_size):
        chunk = prompts[start : start + batch_size]
        chunks.append(greedy_generate(target, chunk, new_tokens))
    return torch.cat(chunks)


def distill_draft(
    draft: LlamaForCausalLM,
    target: LlamaForCausalLM,
    stream: torch.Tensor,
    recipe: Recipe,
    *,
    seed: int,
    bf16: bool,
    progress: bool,
    hard_weight: float = 0.1,
    on_policy: torch.Tensor | None = None,
    on_policy_fraction: float,
) -> list[float]:
    """KL(target || draft), plus a little ground-truth cross-entropy, on stream windows.

    With `on_policy` ([N, seq_len + 1] target generations), that fraction of every batch comes from it.
    """
    target.eval()  # type: ignore[no-untyped-call]
    generated = round(recipe.batch_size * on_policy_fraction) if on_policy is not None else 0

    def sampler(generator: torch.Generator) -> torch.Tensor:
        batch = sample_batch(stream, generator, recipe.batch_size - generated, recipe.seq_len)
        if on_policy is None:
            return batch
        rows = torch.randint(0, on_policy.shape[0], (generated,), generator=generator)
        return torch.cat([batch, on_policy[rows, : recipe.seq_len + 1]])

    def loss_fn(batch: torch.Tensor) -> tuple[torch.Tensor, float]:
        inputs = batch[:, :-1]
        with torch.no_grad():
            teacher = target(input_ids=inputs).logits
        student = draft(input_ids=inputs).logits  # [B, T, V]
        soft = distillation_loss(student, teacher)
        hard = F.cross_entropy(student.float().flatten(0, 1), batch[:, 1:].flatten())
        return soft + hard_weight * hard, soft.item()

    groups = param_groups(draft, recipe)
    return run_steps(groups, [draft], loss_fn, sampler, recipe, seed + 1, "draft", bf16=bf16, progress=progress)
