"""The real default model through the whole fleet: router and workers serving SmolLM2-135M-Instruct from
the `gguf:` spec the defaults use, prepared by the worker itself (finding the session's conversion). The
fleet must not damage a real model's output: the chat template, stop tokens, multi-byte characters and
streamed chunks give exactly what transformers' own greedy `generate` gives on the same checkpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from benchmarks.serving.smoke_set import greedy_chat_answers
from contracts import Chunk, Done, FinishReason
from fleet.client import FleetClient
from fleet.settings import SMOLLM2_135M_INSTRUCT
from tests.fixtures_kafka import FleetProcs, started, write_config
from tests.fixtures_smollm2 import PREPARE_TIMEOUT_S, PreparedSmolLM2, needs_smollm2

pytestmark = [pytest.mark.slow, pytest.mark.timeout(PREPARE_TIMEOUT_S), needs_smollm2]

QUESTIONS = [
    "What is the capital of France?",
    "Say 'café' and 'naïve' in a sentence.",  # multi-byte characters split across tokens and chunks
]
MAX_TOKENS = 40


@pytest.fixture(scope="module")
async def real_fleet(
    broker: str, smollm2: PreparedSmolLM2, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FleetProcs]:
    d = tmp_path_factory.mktemp("realfleet")
    cfg = write_config(
        d / "fleet.toml",
        [
            {"name": "small", "path": SMOLLM2_135M_INSTRUCT, "quantization": "nf4", "torch_threads": 1},
            {"name": "large", "path": SMOLLM2_135M_INSTRUCT, "ngram_speculation": True, "torch_threads": 1},
        ],
        prefix="real",
        cache_dir=smollm2.cache_dir,
    )
    async with started(cfg, broker, d, [("small", "worker-small"), ("large", "worker-large")]) as fleet:
        yield fleet


def reference_answers(smollm2: PreparedSmolLM2) -> list[str]:
    """transformers' own greedy answers on the converted checkpoint (full precision), stop token removed."""
    return greedy_chat_answers(smollm2.path, QUESTIONS, MAX_TOKENS)


async def ask(fleet: FleetProcs, model: str, question: str) -> tuple[str, Done]:
    streamed = []
    async with FleetClient(fleet.settings) as c:
        async for ev in c.stream(
            messages=[{"role": "user", "content": question}], model=model, max_tokens=MAX_TOKENS, timeout_s=120
        ):
            if isinstance(ev, Chunk):
                streamed.append(ev.text)
            elif isinstance(ev, Done):
                return "".join(streamed), ev
    raise AssertionError("no done event")


async def test_full_precision_tier_answers_exactly_what_transformers_generates(
    real_fleet: FleetProcs, smollm2: PreparedSmolLM2
) -> None:
    want = reference_answers(smollm2)
    assert "Paris" in want[0] and "café" in want[1]
    for question, expected in zip(QUESTIONS, want, strict=True):
        streamed, done = await ask(real_fleet, "large", question)  # prompt lookup on: greedy stays identical
        assert done.text == expected, (question, done.text, expected)
        assert streamed == done.text
        assert "<|im_end|>" not in done.text and done.finish_reason is FinishReason.STOP
        assert done.model == "large" and 0 < done.usage.completion_tokens < MAX_TOKENS


async def test_nf4_tier_answers_the_question(real_fleet: FleetProcs) -> None:
    streamed, done = await ask(real_fleet, "small", QUESTIONS[0])
    assert "Paris" in done.text and streamed == done.text and done.finish_reason is FinishReason.STOP
