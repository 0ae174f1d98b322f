"""The in-process baseline: the worker's engine driver and output processing, without Kafka.

It drives the `Engine` through the worker's own engine driver (`worker.driver.EngineDriver`: requests
added from the event loop, `step()` in one worker thread, one call at a time, output processing by
`worker.state.RequestState`: detokenization and chunk coalescing with the fleet's
`chunk_interval_ms` / `chunk_max_tokens`), with the same tokenizer and input processing
(`worker.inputs`). A chunk counts as "received" the moment the driver hands it to the worker's
outbox, so the difference from the fleet's numbers is what Kafka and the fleet's services add.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from types import TracebackType
from typing import Any

from benchmarks.common.datasets import BenchRequest
from benchmarks.common.metrics import RequestTrace
from contracts.messages import ChatMessage, Chunk, Done, Error, Request
from contracts.validation import InvalidRequest
from fleet.settings import Settings
from worker.driver import EngineDriver, Update
from worker.engine.api import Engine, FinishKind
from worker.inputs import prompt_token_ids


class InProcessEngine:
    """`async with InProcessEngine(...) as eng: trace = await eng.send(bench_request)`."""

    def __init__(self, settings: Settings, engine: Engine, tokenizer: Any, *, model: str, max_model_len: int) -> None:
        self.settings = settings
        self.engine = engine
        self.tokenizer = tokenizer
        self.model = model
        self.max_model_len = max_model_len
        self._ids = itertools.count()
        self._driver = EngineDriver(
            engine,
            tokenizer,
            model=model,
            max_model_len=max_model_len,
            latency=settings.latency,
            max_attempts=settings.worker.max_attempts,
            clock=time.perf_counter,  # the traces' clock
        )
        self._live: dict[str, tuple[RequestTrace, asyncio.Future[None]]] = {}  # run id -> trace, done
        self._loop_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InProcessEngine:
        self._loop_task = asyncio.create_task(self._driver.run(self._on_update), name="inprocess-engine")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._driver.close()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        self._fail_all("aborted")

    async def send(self, breq: BenchRequest) -> RequestTrace:
        trace = RequestTrace(send_s=time.perf_counter(), prompt_tokens=breq.prompt_len)
        rid = f"inproc-{next(self._ids)}"
        msgs = [ChatMessage(role=m["role"], content=m["content"]) for m in breq.messages] if breq.messages else None
        req = Request(
            id=rid,
            reply_to="inprocess",
            prompt=breq.prompt,
            messages=msgs,
            model=self.model,
            max_tokens=breq.output_len,
        )
        try:
            ids = prompt_token_ids(req, self.tokenizer, self.max_model_len)
        except InvalidRequest as exc:
            trace.error = exc.code.value
            return trace
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state = self._driver.add(req, ids, intake_s=trace.send_s)
        self._live[state.run_id] = (trace, fut)
        await fut
        return trace

    def _on_update(self, upd: Update) -> None:
        for ev in upd.requests:
            entry = self._live.get(ev.state.run_id)
            if entry is None:
                continue
            trace, fut = entry
            now = upd.at_s
            for _ in ev.chunks:
                trace.token_event_s.append(now)
            if ev.finished is None:
                continue
            del self._live[ev.state.run_id]
            if ev.finished is FinishKind.ABANDONED:
                trace.error = "abandoned"
            for final in ev.final:
                if isinstance(final, Chunk):
                    trace.token_event_s.append(now)
                elif isinstance(final, Done):
                    trace.done_s = now
                    trace.output_tokens = final.usage.completion_tokens
                    trace.prompt_tokens = final.usage.prompt_tokens
                elif isinstance(final, Error):
                    trace.error = final.code.value
            if not fut.done():
                fut.set_result(None)
        for p in upd.poisoned:
            self._fail_one(p.state.run_id, "poison")
        if upd.engine_died is not None:
            self._fail_all("engine_died")

    def _fail_one(self, run_id: str, error: str) -> None:
        entry = self._live.pop(run_id, None)
        if entry is not None:
            trace, fut = entry
            trace.error = trace.error or error
            if not fut.done():
                fut.set_result(None)

    def _fail_all(self, error: str) -> None:
        for run_id in list(self._live):
            self._fail_one(run_id, error)
