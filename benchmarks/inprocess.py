"""The in-process baseline: the worker's engine and output processing, without Kafka.

It drives the same `Engine` the worker drives, the same way (requests added
from the event loop, `step()` in one worker thread, one call at a time), with
the same tokenizer, input processing (`worker.inputs`) and output processing
(`worker.state.RequestState`: detokenization and chunk coalescing with the
fleet's `chunk_interval_ms` / `chunk_max_tokens`). A chunk counts as
"received" the moment the worker would hand it to its Kafka producer, so the
difference from the fleet's numbers is what Kafka and the fleet's services add.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from types import TracebackType
from typing import Any

from benchmarks.datasets import BenchRequest
from benchmarks.metrics import RequestTrace
from contracts.codec import ContentType
from contracts.messages import ChatMessage, Chunk, Done, Error, Request
from contracts.validation import InvalidRequest
from fleet.settings import Settings
from worker.engine.api import Engine, EngineRequest, FinishKind, SamplingParams, StepOutput
from worker.inputs import prompt_token_ids
from worker.output import ChunkCoalescer, IncrementalDetokenizer
from worker.state import RequestState


class InProcessEngine:
    """`async with InProcessEngine(...) as eng: trace = await eng.send(bench_request)`."""

    def __init__(self, settings: Settings, engine: Engine, tokenizer: Any, *, model: str, max_model_len: int) -> None:
        self.settings = settings
        self.engine = engine
        self.tokenizer = tokenizer
        self.model = model
        self.max_model_len = max_model_len
        self._ids = itertools.count()
        self._live: dict[str, tuple[RequestState, RequestTrace, asyncio.Future[None]]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InProcessEngine:
        self._loop_task = asyncio.create_task(self._engine_loop(), name="inprocess-engine")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for _, trace, fut in self._live.values():
            trace.error = trace.error or "aborted"
            if not fut.done():
                fut.set_result(None)

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
        lat = self.settings.latency
        state = RequestState(
            request=req,
            run_id=rid,
            partition=None,
            offset=0,
            content_type=ContentType.JSON,
            intake_s=trace.send_s,
            detok=IncrementalDetokenizer(self.tokenizer, req.stop),
            coalescer=ChunkCoalescer(lat.chunk_interval_ms, lat.chunk_max_tokens),
            model=self.model,
        )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._live[rid] = (state, trace, fut)
        self.engine.add_request(
            EngineRequest(
                request_id=rid,
                prompt_token_ids=ids,
                params=SamplingParams(max_tokens=min(breq.output_len, self.max_model_len - len(ids))),
                arrival_s=time.time(),
            )
        )
        self._wake.set()
        await fut
        return trace

    async def _engine_loop(self) -> None:
        while True:
            if not self.engine.has_unfinished():
                self._wake.clear()
                if not self.engine.has_unfinished():
                    await self._wake.wait()
                continue
            outs = await asyncio.to_thread(self.engine.step)
            now = time.perf_counter()
            for out in outs:
                self._on_output(out, now)

    def _on_output(self, out: StepOutput, now: float) -> None:
        entry = self._live.get(out.request_id)
        if entry is None:
            return
        state, trace, fut = entry
        for _ in state.on_output(out, now):
            trace.token_event_s.append(now)
        finish = out.finished
        if finish is None and state.detok.stopped:
            self.engine.abort_request(state.run_id, FinishKind.ABANDONED)
            finish = FinishKind.STOP
        if finish is None:
            return
        del self._live[out.request_id]
        if finish is FinishKind.ABANDONED:
            trace.error = "abandoned"
        else:
            for ev in state.finish(finish, now):
                if isinstance(ev, Chunk):
                    trace.token_event_s.append(now)
                elif isinstance(ev, Done):
                    trace.done_s = now
                    trace.output_tokens = ev.usage.completion_tokens
                    trace.prompt_tokens = ev.usage.prompt_tokens
                elif isinstance(ev, Error):
                    trace.error = ev.code.value
        if not fut.done():
            fut.set_result(None)
