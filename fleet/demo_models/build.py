"""The whole build in one function: corpus, tokenizer, target, draft, measurements, files.

`build_demo_models` writes into whatever directory it is given; making that atomic and building only
once across processes is the cache's job (fleet/demo_models/cache.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from tqdm.auto import tqdm
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from fleet.demo_models import evaluate
from fleet.demo_models.architecture import (
    DRAFT_SHAPE,
    TARGET_SHAPE,
    ModelShape,
    new_model,
    parameter_count,
    save_checkpoint,
)
from fleet.demo_models.corpus import SYSTEM_PROMPT, Corpus, load_corpus, take_within
from fleet.demo_models.distill import distill_draft, greedy_continuations, init_draft_from_target
from fleet.demo_models.tokenizer import render_chat, render_file, train_bpe, wrap
from fleet.demo_models.train import (
    Recipe,
    bf16_autocast_is_fast,
    encode_documents,
    seeded,
    tail_mean,
    train_target,
    zero_init_residual_outputs,
)

SAMPLE_PROMPT = "import os\n\n\ndef "


@dataclass(frozen=True, slots=True)
class BuildRecipe:
    """Every knob of a build; its fingerprint is stored with the models so a changed recipe rebuilds."""

    corpus_bytes: int
    tokenizer_bytes: int
    vocab_size: int
    target: ModelShape
    draft: ModelShape
    draft_layers: tuple[int, ...]  # target layers the draft starts from
    target_recipe: Recipe
    draft_recipe: Recipe
    on_policy_sequences: int = 512  # target generations mixed into the final distillation...
    on_policy_fraction: float = 0.75  # ...as this share of each batch
    on_policy_prompt_len: int = 32
    num_threads: int = 2
    eval_windows: int = 32
    eval_seq_len: int = 256
    eval_prompts: int = 32
    eval_new_tokens: int = 64
    latency_steps: int = 64
    sample_tokens: int = 96
    max_chats: int | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        """A short hash of the recipe: equal recipes give equal fingerprints."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


DEMO_RECIPE = BuildRecipe(
    corpus_bytes=10_000_000,
    tokenizer_bytes=4_000_000,
    vocab_size=4096,
    target=TARGET_SHAPE,
    draft=DRAFT_SHAPE,
    draft_layers=(0,),
    target_recipe=Recipe(steps=400, batch_size=16, seq_len=128, lr=3e-3, warmup_steps=20, embedding_lr_scale=100.0),
    draft_recipe=Recipe(steps=200, batch_size=16, seq_len=128, lr=2e-3, warmup_steps=10, embedding_lr_scale=10.0),
)


def _log(message: str, progress: bool) -> None:
    """A progress line that does not break tqdm bars."""
    if progress:
        tqdm.write(message, file=sys.stderr)


def _documents(corpus: Corpus, seed: int) -> list[str]:
    """Whole files and chat examples, rendered with their special tokens, in a seeded shuffle."""
    documents = [render_file(text) for text in corpus.train]
    documents += [render_chat(example, SYSTEM_PROMPT) for example in corpus.chats]
    random.Random(seed).shuffle(documents)
    return documents


def _tokenizer(corpus: Corpus, recipe: BuildRecipe) -> PreTrainedTokenizerFast:
    """BPE trained on the first `tokenizer_bytes` of the training files."""
    texts = list(take_within(corpus.train, recipe.tokenizer_bytes))
    return wrap(train_bpe(texts, recipe.vocab_size), recipe.target.max_position_embeddings)


def _measure(
    target: LlamaForCausalLM,
    draft: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    heldout: torch.Tensor,
    recipe: BuildRecipe,
) -> dict[str, Any]:
    """The numbers that say whether drafting can pay off, and what the target writes."""
    prompt_len = 32
    step = max(1, (heldout.numel() - prompt_len) // recipe.eval_prompts)
    prompts = torch.stack([heldout[i * step : i * step + prompt_len] for i in range(recipe.eval_prompts)])
    acceptance = evaluate.greedy_acceptance(target, draft, prompts, new_tokens=recipe.eval_new_tokens)
    scores = evaluate.heldout_scores(target, draft, heldout, windows=recipe.eval_windows, seq_len=recipe.eval_seq_len)
    target_ms = evaluate.decode_ms_per_token(target, steps=recipe.latency_steps)
    draft_ms = evaluate.decode_ms_per_token(draft, steps=recipe.latency_steps)
    return {
        "heldout_loss_target": scores.loss_target,
        "heldout_loss_draft": scores.loss_draft,
        "agreement_heldout": scores.agreement,
        "agreement_target_greedy": acceptance.agreement,
        "speculative_tokens_per_step_k4": acceptance.tokens_per_step,
        "target_ms_per_token": target_ms,
        "draft_ms_per_token": draft_ms,
        "latency_ratio": target_ms / draft_ms,
        "sample_prompt": SAMPLE_PROMPT,
        "sample": evaluate.greedy_sample(target, tokenizer, SAMPLE_PROMPT, recipe.sample_tokens),
    }


def _on_policy(target: LlamaForCausalLM, stream: torch.Tensor, recipe: BuildRecipe, seed: int) -> torch.Tensor | None:
    """Target generations for the final distillation, each one training window long."""
    if recipe.on_policy_sequences == 0:
        return None
    return greedy_continuations(
        target,
        stream,
        count=recipe.on_policy_sequences,
        prompt_len=recipe.on_policy_prompt_len,
        new_tokens=recipe.draft_recipe.seq_len + 1 - recipe.on_policy_prompt_len,
        seed=seed + 2,
    )


class _Phases:
    """Wall-clock seconds per build phase, logged as they start and kept for the metadata."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str, message: str) -> Iterator[None]:
        _log(f"demo models: {message}", self.progress)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 2)


def build_demo_models(out_dir: Path, *, seed: int, recipe: BuildRecipe, progress: bool) -> dict[str, Any]:
    """Build the pair into `out_dir`/large and `out_dir`/small; return the metadata (not written here)."""
    started = time.perf_counter()
    bf16 = bf16_autocast_is_fast()
    phase = _Phases(progress)
    with phase("data", f"reading stdlib source, training the tokenizer (vocab {recipe.vocab_size})"):
        corpus = load_corpus(recipe.corpus_bytes, seed=seed, max_chats=recipe.max_chats)
        tokenizer = _tokenizer(corpus, recipe)
        stream = encode_documents(tokenizer, _documents(corpus, seed))
        heldout = encode_documents(tokenizer, [render_file(text) for text in corpus.heldout])
    with seeded(seed, recipe.num_threads):
        target = new_model(recipe.target, tokenizer)
        zero_init_residual_outputs(target)
        draft = new_model(recipe.draft, tokenizer)
        init_draft_from_target(draft, target, list(recipe.draft_layers))
        with phase("target", f"training the target on {stream.numel():,} tokens, distilling the draft alongside"):
            target_losses = train_target(
                target,
                stream,
                recipe.target_recipe,
                seed=seed,
                bf16=bf16,
                progress=progress,
                draft=draft,
                draft_lr=recipe.draft_recipe.lr,
            )
        with phase("draft", "distilling the draft from the finished target"):
            draft_losses = distill_draft(
                draft,
                target,
                stream,
                recipe.draft_recipe,
                seed=seed,
                bf16=bf16,
                progress=progress,
                on_policy=_on_policy(target, stream, recipe, seed),
                on_policy_fraction=recipe.on_policy_fraction,
            )
        with phase("measure", "measuring agreement and latency"):
            measured = _measure(target, draft, tokenizer, heldout, recipe)
    save_checkpoint(target, tokenizer, out_dir / "large")
    save_checkpoint(draft, tokenizer, out_dir / "small")
    return {
        "seed": seed,
        "recipe": recipe.to_dict(),
        "fingerprint": recipe.fingerprint(),
        "params": {"large": parameter_count(target), "small": parameter_count(draft)},
        "train_tokens": stream.numel(),
        "heldout_tokens": heldout.numel(),
        "final_loss": {"large": tail_mean(target_losses), "small": tail_mean(draft_losses)},
        "bf16_autocast": bf16,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
        "phase_seconds": phase.seconds,
        "build_seconds": round(time.perf_counter() - started, 2),
        **measured,
    }
