"""The load driver: sends requests on an arrival schedule, bounded by a concurrency,
and records what the client saw. The same driver runs the fleet, the raw Kafka
floor and the in-process engine, so the three are timed the same way.

As in `vllm bench serve`, the send time is taken after the concurrency
semaphore is acquired (waiting for a free slot is not latency), and warm-up
requests run before the measured run and are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.common.datasets import BenchRequest
from benchmarks.common.metrics import RequestTrace

SendOne = Callable[[BenchRequest], Awaitable[RequestTrace]]


async def drive(
    send_one: SendOne,
    requests: Sequence[BenchRequest],
    offsets_s: np.ndarray,
    *,
    max_concurrency: int | None = None,
    progress: bool = False,
    desc: str = "requests",
) -> tuple[list[RequestTrace], float]:
    """Send `requests[i]` at `offsets_s[i]` after the start; returns the traces (in request
    order) and the measured duration in seconds (start to the last terminal event)."""
    if len(offsets_s) != len(requests):
        raise ValueError("one offset per request")
    sem: asyncio.Semaphore | contextlib.nullcontext[None] = (
        asyncio.Semaphore(max_concurrency) if max_concurrency else contextlib.nullcontext()
    )
    bar = _progress(len(requests), desc) if progress else None

    async def one(req: BenchRequest) -> RequestTrace:
        async with sem:
            trace = await send_one(req)
        if bar is not None:
            bar.update(1)
        return trace

    start = time.perf_counter()
    tasks: list[asyncio.Task[RequestTrace]] = []
    try:
        for req, at in zip(requests, offsets_s, strict=True):
            delay = start + float(at) - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(req)))
        traces = list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:
            t.cancel()
        if bar is not None:
            bar.close()
    return traces, time.perf_counter() - start


async def warm_up(send_one: SendOne, requests: Sequence[BenchRequest], max_concurrency: int | None) -> None:
    """Run `requests` (not counted) with the run's concurrency bound, all at once."""
    if requests:
        await drive(send_one, requests, np.zeros(len(requests)), max_concurrency=max_concurrency)


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="req", leave=False, dynamic_ncols=True)


def fleet_sender(client: Any, *, model: str, timeout_s: float = 120.0, temperature: float = 0.0) -> SendOne:
    """A sender through `fleet.client.FleetClient.stream`.

    Output-carrying events are the chunks, and `done` when it delivers text no
    chunk did. A restarted generation (a worker died mid-request) discards the
    events of the abandoned run, as the client presents it.
    """
    from aiokafka.errors import KafkaError

    from contracts.messages import Chunk, Done
    from fleet.client import FleetError, RequestFailed, Restart

    async def send(req: BenchRequest) -> RequestTrace:
        trace = RequestTrace(send_s=time.perf_counter(), prompt_tokens=req.prompt_len)
        chars = 0
        try:
            async for ev in client.stream(
                req.prompt,
                messages=req.messages,
                model=model,
                max_tokens=req.output_len,
                temperature=temperature,
                timeout_s=timeout_s,
            ):
                now = time.perf_counter()
                if isinstance(ev, Chunk):
                    trace.token_event_s.append(now)
                    chars += len(ev.text)
                elif isinstance(ev, Restart):
                    trace.token_event_s.clear()
                    chars = 0
                elif isinstance(ev, Done):
                    if len(ev.text) > chars:
                        trace.token_event_s.append(now)
                    trace.done_s = now
                    trace.output_tokens = ev.usage.completion_tokens
                    trace.prompt_tokens = ev.usage.prompt_tokens or req.prompt_len
        except RequestFailed as exc:
            trace.error = exc.code.value
        except (FleetError, KafkaError) as exc:
            trace.error = type(exc).__name__
        return trace

    return send
