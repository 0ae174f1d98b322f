"""Benchmark prompts: random prompts of set lengths, or prompt files (JSONL).

A fixed seed gives the same prompts in the same order. With a tokenizer the
random prompts are cut to exactly `input_len` tokens (as the model counts
them); without one a word counts as a token.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

# a small fixed vocabulary of common English words: prompts read like text to any tokenizer
_WORDS = (
    "the of and to in is was for on that with as by at from his her an which are this be had not or have "
    "but one were they all there been has when who will more no if out so said what up its about into than "
    "them can only other new some could time these two may then do first any my now such like our over man "
    "me even most made after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very make world still own see men work "
    "long get here between both life being under never day same another know while last might us great old "
    "year off come since against go came right used take three river stone garden market letter winter"
).split()


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


@dataclass(frozen=True, slots=True)
class BenchRequest:
    prompt: str | None
    prompt_len: int  # tokens (words without a tokenizer); the fleet's usage count wins where reported
    output_len: int  # sent as max_tokens
    messages: list[dict[str, str]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _count(text: str, tokenizer: Tokenizer | None) -> int:
    return len(tokenizer.encode(text)) if tokenizer is not None else len(text.split())


def _lengths(rng: random.Random, mean: int, range_ratio: float) -> int:
    lo = max(1, round(mean * (1.0 - range_ratio)))
    hi = max(lo, round(mean * (1.0 + range_ratio)))
    return rng.randint(lo, hi)


def random_requests(
    n: int,
    *,
    input_len: int,
    output_len: int,
    seed: int = 0,
    range_ratio: float = 0.0,
    tokenizer: Tokenizer | None = None,
) -> list[BenchRequest]:
    """`n` prompts of random words; lengths uniform in [len*(1-r), len*(1+r)] (vLLM's random dataset)."""
    if not 0.0 <= range_ratio < 1.0:
        raise ValueError("range_ratio must be in [0, 1)")
    if input_len < 1 or output_len < 1:
        raise ValueError("input_len and output_len must be at least 1")
    rng = random.Random(seed)
    out: list[BenchRequest] = []
    for i in range(n):
        want_in = _lengths(rng, input_len, range_ratio)
        want_out = _lengths(rng, output_len, range_ratio)
        words = [f"#{i}"] + [rng.choice(_WORDS) for _ in range(want_in)]  # a unique head defeats caches
        text = " ".join(words[:want_in])
        if tokenizer is not None:
            ids = tokenizer.encode(" ".join(words))
            while len(ids) < want_in:  # tokenizers that merge words: add more text
                words += [rng.choice(_WORDS) for _ in range(want_in)]
                ids = tokenizer.encode(" ".join(words))
            text = tokenizer.decode(ids[:want_in])
        out.append(BenchRequest(prompt=text, prompt_len=_count(text, tokenizer), output_len=want_out))
    return out


class _Line(msgspec.Struct, forbid_unknown_fields=False):
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    max_tokens: int | None = None
    output_len: int | None = None


def load_jsonl(
    path: str | Path,
    n: int | None = None,
    *,
    output_len: int | None = None,
    default_output_len: int = 128,
    seed: int = 0,
    shuffle: bool = False,
    tokenizer: Tokenizer | None = None,
) -> list[BenchRequest]:
    """Requests from a JSONL file: each line has `prompt` or `messages`, and optionally
    `max_tokens` (or `output_len`). `output_len` overrides every line's; `n` takes that many,
    cycling through the file when it is shorter. `shuffle` reorders with `seed`."""
    decoder = msgspec.json.Decoder(_Line)
    rows: list[BenchRequest] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                line = decoder.decode(raw)
            except msgspec.DecodeError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
            if (line.prompt is None) == (line.messages is None):
                raise ValueError(f"{path}:{lineno}: give exactly one of 'prompt' or 'messages'")
            text = (
                line.prompt if line.prompt is not None else " ".join(m.get("content", "") for m in line.messages or [])
            )
            out_len = output_len or line.max_tokens or line.output_len or default_output_len
            rows.append(BenchRequest(line.prompt, _count(text, tokenizer), out_len, messages=line.messages))
    if not rows:
        raise ValueError(f"{path}: no requests")
    if shuffle:
        random.Random(seed).shuffle(rows)
    if n is None:
        return rows
    return [rows[i % len(rows)] for i in range(n)]
