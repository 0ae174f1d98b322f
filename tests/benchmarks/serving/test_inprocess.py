"""The load driver and the in-process baseline on the simulated engine (no Kafka)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.common.datasets import random_requests
from benchmarks.common.metrics import summarize
from benchmarks.serving.arrivals import ArrivalSpec, arrival_offsets
from benchmarks.serving.inprocess import InProcessEngine
from benchmarks.serving.serve import drive
from fleet.settings import LatencySettings, Settings
from worker.engine.simulated import SimulatedEngine


class WordTokenizer:
    """Enough of a Hugging Face tokenizer for input and output processing: one token per byte."""

    chat_template = None

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": list(text.encode())}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(i % 96 + 32 for i in ids).decode()


async def test_inprocess_simulated_engine_timings() -> None:
    settings = Settings(latency=LatencySettings(chunk_interval_ms=30, chunk_max_tokens=4))
    engine = SimulatedEngine(tokens_per_s=200.0, max_running=8)
    reqs = random_requests(12, input_len=16, output_len=10, seed=1) + random_requests(
        2, input_len=8, output_len=1, seed=2
    )
    offsets = arrival_offsets(len(reqs), ArrivalSpec(request_rate=40.0), seed=0)
    async with InProcessEngine(settings, engine, WordTokenizer(), model="sim", max_model_len=4096) as eng:
        traces, duration = await drive(eng.send, reqs, offsets, max_concurrency=4)
    s = summarize(traces, duration)
    assert s.completed == 14 and s.failed == 0
    assert s.total_output_tokens == 12 * 10 + 2
    assert s.tpot.n == 12  # the two single-token requests have no TPOT
    # one step is 5 ms: the first token comes after about one step, then a token a step
    assert 4.0 <= s.ttft.median <= 40.0
    assert 4.0 <= s.tpot.median <= 15.0
    assert s.itl.n > 0 and s.e2el.median > s.ttft.median


async def test_drive_respects_concurrency() -> None:
    import asyncio

    from benchmarks.common.metrics import RequestTrace

    live = 0
    peak = 0

    async def send(_: Any) -> RequestTrace:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        t = RequestTrace(send_s=0.0)
        await asyncio.sleep(0.01)
        live -= 1
        t.token_event_s.append(0.005)
        t.done_s = 0.01
        return t

    reqs = random_requests(20, input_len=4, output_len=2)
    traces, _ = await drive(send, reqs, arrival_offsets(20, ArrivalSpec()), max_concurrency=3)
    assert len(traces) == 20 and peak == 3


def test_drive_checks_lengths() -> None:
    import asyncio

    import numpy as np

    async def send(_: Any) -> Any:
        raise AssertionError

    with pytest.raises(ValueError):
        asyncio.run(drive(send, random_requests(2, input_len=4, output_len=2), np.zeros(3)))
