"""Helpers for engine tests: tiny checkpoints and a step-by-step driver."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from worker.engine.api import EngineRequest, FinishKind, SamplingParams, StepOutput
from worker.engine.continuous import ContinuousEngine
from worker.loader import ModelBundle


@dataclass(frozen=True)
class Pair:
    target: Path
    draft: Path


def own_tiny_target(out: Path, seed: int = 0) -> Path:
    """A random 2-layer Llama whose greedy continuations are varied (untied embeddings, wide init),
    not the repeat-the-last-token loop a tied random model falls into."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from fleet.demo_models.tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        initializer_range=0.2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def tied_tiny_target(out: Path, seed: int = 0) -> Path:
    """The default random tiny checkpoint (2 layers, hidden 64): untrained, it tends to repeat
    itself, which is what prompt lookup needs to find proposals."""
    from fleet.demo_models.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(out, seed=seed)


def noisy_copy(src: Path, out: Path, scale: float, seed: int = 1) -> Path:
    """A draft that agrees with `src` often but not always: its weights plus Gaussian noise."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * p.std().clamp_min(1e-3))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


def without_draft(b: ModelBundle) -> ModelBundle:
    return dataclasses.replace(b, draft=None, draft_weights_bytes=0)


def without_eos(b: ModelBundle) -> ModelBundle:
    return dataclasses.replace(b, eos_token_ids=frozenset())


@dataclass
class Result:
    tokens: list[int] = dataclasses.field(default_factory=list)
    finished: FinishKind | None = None
    outputs: list[StepOutput] = dataclasses.field(default_factory=list)

    @property
    def last(self) -> StepOutput:
        return self.outputs[-1]


Arrival = tuple[int, EngineRequest]  # (step at which it is added, request)


def run(engine: ContinuousEngine, arrivals: Iterable[Arrival], max_steps: int = 10_000) -> dict[str, Result]:
    """Drive the engine step by step, adding each request at its step."""
    pending = sorted(arrivals, key=lambda a: a[0])
    res: dict[str, Result] = {}
    for step in range(max_steps):
        while pending and pending[0][0] <= step:
            engine.add_request(pending.pop(0)[1])
        for out in engine.step():
            r = res.setdefault(out.request_id, Result())
            assert r.finished is None, "output after the terminal one"
            r.tokens.extend(out.new_token_ids)
            r.outputs.append(out)
            r.finished = out.finished
        if not pending and not engine.has_unfinished():
            return res
    raise AssertionError("engine did not finish")


def req(rid: str, prompt: list[int], max_tokens: int = 16, **params: Any) -> EngineRequest:
    return EngineRequest(rid, prompt, SamplingParams(max_tokens=max_tokens, **params))


def prompts(n: int, seed: int = 0, lo: int = 3, hi: int = 40, vocab: int = 500) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(lo, hi, (n,), generator=g).tolist()
    return [torch.randint(3, vocab, (k,), generator=g).tolist() for k in lens]
