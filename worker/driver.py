"""The engine driver: requests in, each request's reply events out. It knows nothing of Kafka.

One `step()` reads like vLLM's `EngineCore.step()`: launch what may run, step the engine once (in a
worker thread: the engine computes while the event loop serves Kafka), then update each request
from its `StepOutput` through output processing (`worker/state.py`, `worker/output.py`:
detokenization, stop strings, chunk coalescing) and return plain data, an `Update`. The worker
(`worker/replies.py`) turns an Update into records; the in-process benchmark
(`benchmarks/serving/inprocess.py`) records its timings. Neither sees the engine.

It also owns what a step failure does (the requests the engine held are started again and bisected
until the one that fails the step runs alone, and is charged), the worker's own deadline check
(`expire_overdue`), and engine progress for the watchdog (`stalled_s`). Requests arrive from the
event-loop thread (`add`, `cancel`, `abandon`); `run()` steps whenever the engine holds work.

Where a request came from (a Kafka partition, offset and record) rides along on its `RequestState`
untouched: the driver never reads it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from contracts.codec import ContentType
from contracts.messages import Chunk, Done, Error, Priority, Progress, Request
from fleet.settings import LatencySettings
from worker.engine.api import Engine, EngineDied, EngineRequest, FinishKind, SamplingParams, StepOutput
from worker.output import ChunkCoalescer, IncrementalDetokenizer
from worker.state import RequestState

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class RequestEvents:
    """What one request produced: chunks to send now and, once it ended, how (`finished`) and the
    events that end it (`final`: the rest of the text, then `Done` or `Error`). A request the worker
    gave up (`ABANDONED`) ends with no events: nothing is sent for it."""

    state: RequestState
    chunks: list[Chunk] = field(default_factory=list)
    finished: FinishKind | None = None
    final: list[Chunk | Done | Error] = field(default_factory=list)


@dataclass(slots=True)
class Poisoned:
    """A request that failed the engine's step alone `max_attempts` times: refuse it as `poison`."""

    state: RequestState
    reason: str


@dataclass(slots=True)
class Update:
    """What one driver call produced, in the order the engine produced it."""

    requests: list[RequestEvents] = field(default_factory=list)
    poisoned: list[Poisoned] = field(default_factory=list)
    engine_died: str | None = None  # the engine is gone with what it held: the worker must stop
    at_s: float = 0.0  # when the events were made, by the driver's clock (0: nothing was made)

    def __bool__(self) -> bool:
        return bool(self.requests or self.poisoned or self.engine_died)


@dataclass(slots=True)
class DriverCounts:
    engine_steps: int = 0
    engine_failures: int = 0
    abandoned: int = 0
    expired_by_worker: int = 0
    watchdog_trips: int = 0  # the watchdog found the engine hung (worker/watchdog.py): the worker then exits


class Observer(Protocol):
    """Told of each request's tokens and end, where they happen (the worker's metrics: worker/metrics.py)."""

    def tokens(self, state: RequestState, n: int, prev_s: float | None, now_s: float) -> None:
        """`n` new tokens for `state` at `now_s`; `prev_s`: when its previous ones came (None: these are its first)."""

    def finished(self, state: RequestState, kind: FinishKind, now_s: float) -> None:
        """`state` ended as `kind` (stop, length, cancelled, expired) at `now_s`."""


class EngineDriver:
    def __init__(
        self,
        engine: Engine,
        tokenizer: Any,
        *,
        model: str,
        max_model_len: int,
        latency: LatencySettings,
        max_attempts: int,
        suspect_alone_after: int = 0,
        before_launch: Callable[[RequestState, Callable[[], None]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.model = model
        self.max_model_len = max_model_len
        self._latency = latency
        self._max_attempts = max_attempts
        self._suspect_alone_after = suspect_alone_after  # 0: never; else runs with this many deaths run alone
        # called with each run about to enter the engine and what enters it: the worker first makes the start of
        # this run durable (it counts as an attempt should the engine die with it); None: enter at once
        self.before_launch = before_launch
        self._launching: set[str] = set()  # runs waiting for `before_launch` to let them in
        self._dead: str | None = None  # the engine died while a run entered it outside `step`
        self._clock = clock  # stamps on outputs: time.time() matches the fleet's intake stamps
        self.states: dict[str, RequestState] = {}  # run_id -> state
        self.by_request: dict[str, set[str]] = {}  # request id -> run ids held here
        self.counts = DriverCounts()
        # isolating a failing engine step: groups of run ids that run alone, one group at a time
        self._groups: deque[list[str]] = deque()
        self._group: set[str] | None = None  # the group in the engine now (None: not isolating)
        self._held: deque[str] = deque()  # runs added while isolating, started when it ends
        self._wake = asyncio.Event()
        self._closed = False
        self.progress_s = time.monotonic()  # the engine's last step (or the last time it had nothing to do)
        self.observer: Observer | None = None  # None: nothing observes (metrics off)

    # -- requests in (event-loop thread) -----------------------------------------------------------
    def add(
        self,
        request: Request,
        prompt_ids: list[int],
        *,
        content_type: ContentType = ContentType.JSON,
        intake_s: float,
        partition: Any = None,
        offset: int = 0,
        record: Any = None,
        run_id: str | None = None,
        progress: Progress | None = None,
        deaths: int = 0,
    ) -> RequestState:
        """Start a request under `run_id` (default: a fresh one; held back while a failing step is isolated).

        `progress`: an earlier owner's record of the same run: the request continues from it (the engine prefills
        prompt plus tokens so far) unless its replay fails (`state.resumed_tokens` stays 0: start afresh under
        another run id). `deaths`: workers that died with it before; from `suspect_alone_after` on it runs alone.
        A resumed request with nothing left to generate is not launched: `finish_resumed` ends it.
        Raises `EngineDied` when the engine is gone; the request then stays in `states`."""
        if run_id is not None and run_id in self.states:
            # a second copy of a request this worker is running (a peer that bypassed the router's dedup): the
            # record is the live run's own, not an earlier owner's; the copy runs on its own, never over it
            log.warning("worker.copy_of_running", request_id=request.id[:200], run_id=run_id)
            run_id, progress = None, None
        state = self._start(
            request, prompt_ids, content_type, intake_s, partition, offset, record, deaths, launch=False, run_id=run_id
        )
        state.started_attempts = deaths + 1
        if progress is not None and not state.resume(progress, self._clock()):
            log.warning("worker.resume_failed", request_id=request.id, run_id=state.run_id)
            self._forget(state.run_id)
            state = self._start(
                request, prompt_ids, content_type, intake_s, partition, offset, record, deaths, launch=False
            )
            state.started_attempts = deaths + 1
        if self._pending_finish(state) is not None:
            return state
        if self._suspect_alone_after and deaths >= self._suspect_alone_after:
            log.warning("worker.suspect_alone", request_id=request.id, run_id=state.run_id, deaths=deaths)
            self._groups.append([state.run_id])  # runs alone once the engine has nothing else of its group
            self._wake.set()
        elif self._isolating:
            self._held.append(state.run_id)
        else:
            self._launch(state)
        return state

    def _max_new(self, state: RequestState) -> int:
        return min(state.request.max_tokens, self.max_model_len - len(state.prompt_ids)) - state.resumed_tokens

    def _pending_finish(self, state: RequestState) -> FinishKind | None:
        """How a resumed request that needs no engine ends: finished by its earlier owner, or at its length."""
        if not state.resumed_tokens:
            return None
        if state.resume_finish is not None:
            return state.resume_finish
        return FinishKind.LENGTH if self._max_new(state) <= 0 else None

    def finish_resumed(self, state: RequestState) -> Update:
        """End a resumed request that needs no engine (see `add`); an empty Update for any other."""
        upd = Update(at_s=self._clock())
        kind = self._pending_finish(state)
        if kind is not None and state.run_id in self.states and not state.in_engine:
            upd.requests.append(self._finish(state, kind, upd.at_s))
        return upd

    def cancel(self, request_id: str, *, tenant: str | None = None, any_tenant: bool = True) -> Update:
        """Cancel every run of `request_id` (only those of `tenant` unless `any_tenant`): the engine ends a
        running one at its next step; one held back while isolating ends now (its events are in the
        returned Update)."""
        upd = Update(at_s=self._clock())
        for run_id in list(self.by_request.get(request_id, ())):
            state = self.states[run_id]
            if not any_tenant and state.request.tenant != tenant:
                continue  # another tenant's request under the same id: not the sender's to stop
            if state.in_engine:
                self.engine.abort_request(run_id, FinishKind.CANCELLED)
            else:  # held back while isolating: nothing to stop, answer now
                upd.requests.append(self._finish(state, FinishKind.CANCELLED, upd.at_s))
        self._wake.set()
        return upd

    def abandon(self, run_id: str) -> None:
        """Give a request up without an answer (a revoked partition, a worker that stops)."""
        state = self.states.get(run_id)
        if state is None:
            return
        if state.in_engine:
            self.engine.abort_request(run_id, FinishKind.ABANDONED)
        self._forget(run_id)
        self.counts.abandoned += 1
        log.info(
            "worker.abandoned",
            request_id=state.request.id,
            run_id=run_id,
            partition=getattr(state.partition, "partition", state.partition),
        )

    def abandon_where(self, pred: Callable[[RequestState], bool]) -> None:
        for state in list(self.states.values()):
            if pred(state):
                self.abandon(state.run_id)

    def expire_overdue(self, now_s: float, grace_ms: int) -> Update:
        """Requests past their deadline by more than `grace_ms`: the engine checks deadlines every step,
        so these are stuck or far behind; they end now as `expired`."""
        upd = Update(at_s=now_s)
        now_ms = now_s * 1000
        for state in list(self.states.values()):
            dl = state.request.deadline_ms
            if dl is not None and now_ms > dl + grace_ms and not state.finished:
                self.counts.expired_by_worker += 1
                log.warning("worker.expired_by_worker", request_id=state.request.id, run_id=state.run_id)
                if state.in_engine:
                    self.engine.abort_request(state.run_id, FinishKind.EXPIRED)
                upd.requests.append(self._finish(state, FinishKind.EXPIRED, now_s))
        return upd

    def stalled_s(self) -> float:
        """How long the engine has held work without a step."""
        if not self.engine.has_unfinished():
            return 0.0
        return max(0.0, time.monotonic() - self.progress_s)

    def close(self) -> None:
        """`run()` returns at its next turn."""
        self._closed = True
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------------------
    async def run(self, sink: Callable[[Update], None]) -> None:
        """Step while the engine holds work, handing each non-empty Update to `sink`; returns after
        `close()`, or after handing over an Update that says the engine died."""
        while not self._closed:
            upd = await self.step()
            if upd:
                sink(upd)
            if upd.engine_died is not None:
                return

    async def step(self) -> Update:
        """One turn: launch what may run; when the engine holds nothing, wait for work and return an
        empty Update; otherwise step it once (in a worker thread) and update the requests from it."""
        upd = Update()
        if self._dead is not None:
            upd.engine_died = self._dead
            return upd
        try:
            self._advance_isolation()
        except EngineDied as exc:
            upd.engine_died = str(exc)
            return upd
        if not self.engine.has_unfinished():
            self.progress_s = time.monotonic()  # nothing to do counts as progress
            self._wake.clear()
            if not self.engine.has_unfinished() and (not self._groups or self._launching):
                await self._wake.wait()
            return upd
        steps_before = self._engine_steps()
        try:
            outs = await asyncio.to_thread(self.engine.step)
        except EngineDied as exc:
            upd.engine_died = str(exc)
            return upd
        except Exception as exc:
            self.counts.engine_failures += 1
            log.exception("worker.engine_failed", running=sum(s.in_engine for s in self.states.values()))
            self._on_step_failed(f"{type(exc).__name__}: {exc}", upd)
            return upd
        steps = self._engine_steps()
        if outs or steps is None or steps != steps_before:
            self.progress_s = time.monotonic()
            self.counts.engine_steps += 1
        upd.at_s = now = self._clock()
        for out in outs:
            ev = self._on_output(out, now)
            if ev is not None:
                upd.requests.append(ev)
        return upd

    def _engine_steps(self) -> int | None:
        """Steps the engine reported (an engine in its own process); None: a returned step is a step."""
        steps = getattr(self.engine, "steps_seen", None)
        return steps if isinstance(steps, int) else None

    # -- output processing ---------------------------------------------------------------------------
    def _on_output(self, out: StepOutput, now: float) -> RequestEvents | None:
        state = self.states.get(out.request_id)
        if state is None or state.finished:
            return None  # abandoned, expired by the worker, or already finished by a stop string
        prev_s = state.last_token_s
        chunks = state.on_output(out, now)
        if self.observer is not None and out.new_token_ids:
            self.observer.tokens(state, len(out.new_token_ids), prev_s, now)
        finish = out.finished
        if finish is None and state.detok.stopped:
            self.engine.abort_request(state.run_id, FinishKind.ABANDONED)  # free the slot now
            finish = FinishKind.STOP
        if finish is None:
            return RequestEvents(state, chunks) if chunks else None
        if finish is FinishKind.ABANDONED:
            self.abandon(state.run_id)
            return RequestEvents(state, chunks, FinishKind.ABANDONED)
        ev = self._finish(state, finish, now)
        ev.chunks = chunks
        return ev

    def _finish(self, state: RequestState, kind: FinishKind, now: float) -> RequestEvents:
        final = state.finish(kind, now)
        if self.observer is not None:
            self.observer.finished(state, kind, now)
        self._forget(state.run_id)
        log.debug("worker.finished", request_id=state.request.id, run_id=state.run_id, kind=kind.value)
        return RequestEvents(state, [], kind, final)

    # -- starting requests ---------------------------------------------------------------------------
    def _coalescer(self, req: Request) -> ChunkCoalescer:
        lat = self._latency
        if req.priority is Priority.BATCH:
            return ChunkCoalescer(lat.batch_chunk_interval_ms, lat.batch_chunk_max_tokens)
        return ChunkCoalescer(lat.chunk_interval_ms, lat.chunk_max_tokens)

    def _start(
        self,
        req: Request,
        ids: list[int],
        ct: ContentType,
        intake_s: float,
        partition: Any,
        offset: int,
        record: Any,
        attempts: int,
        *,
        launch: bool,
        run_id: str | None = None,
    ) -> RequestState:
        run_id = run_id or uuid.uuid4().hex[:16]
        state = RequestState(
            request=req,
            run_id=run_id,
            partition=partition,
            offset=offset,
            content_type=ct,
            intake_s=intake_s,
            detok=IncrementalDetokenizer(self.tokenizer, req.stop),
            coalescer=self._coalescer(req),
            model=self.model,
            record=record,
            prompt_ids=ids,
            attempts=attempts,
        )
        self.states[run_id] = state
        self.by_request.setdefault(req.id, set()).add(run_id)
        if launch:
            if self._isolating:
                self._held.append(run_id)
            else:
                self._launch(state)
        return state

    def _launch(self, state: RequestState) -> None:
        if self.before_launch is None:
            self._enter(state)
            return
        self._launching.add(state.run_id)
        self.before_launch(state, lambda: self._entered(state))

    def _entered(self, state: RequestState) -> None:
        self._launching.discard(state.run_id)
        if self.states.get(state.run_id) is not state or state.in_engine:
            return  # abandoned or cancelled meanwhile
        try:
            self._enter(state)
        except EngineDied as exc:
            self._dead = str(exc)
            self._wake.set()

    def _enter(self, state: RequestState) -> None:
        req = state.request
        max_tokens = self._max_new(state)
        if not self.engine.has_unfinished():
            self.progress_s = time.monotonic()  # the watchdog counts from here, not from the end of an idle spell
        self.engine.add_request(
            EngineRequest(
                request_id=state.run_id,
                prompt_token_ids=state.prompt_ids + state.token_ids[: state.resumed_tokens],
                params=SamplingParams(
                    max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, seed=req.seed
                ),
                deadline_s=req.deadline_ms / 1000 if req.deadline_ms else None,
                arrival_s=time.time(),
                priority=1 if req.priority is Priority.BATCH else 0,
                resumed_tokens=state.resumed_tokens,
            )
        )
        state.in_engine = True
        log.debug(
            "worker.admitted",
            request_id=req.id,
            run_id=state.run_id,
            prompt_tokens=len(state.prompt_ids),
            resumed_tokens=state.resumed_tokens,
            partition=getattr(state.partition, "partition", state.partition),
        )
        self._wake.set()

    def _forget(self, run_id: str) -> None:
        state = self.states.pop(run_id, None)
        if state is not None:
            runs = self.by_request.get(state.request.id)
            if runs is not None:
                runs.discard(run_id)
                if not runs:
                    del self.by_request[state.request.id]

    # -- isolating a failing step --------------------------------------------------------------------
    @property
    def _isolating(self) -> bool:
        return self._group is not None or bool(self._groups)

    def _on_step_failed(self, reason: str, upd: Update) -> None:
        """The engine raised on a step: find the request that fails it instead of charging all.

        Every request the engine held is started again (new run id). One that failed alone is charged
        an attempt (`poison` after `max_attempts`); several are split in two groups that run one group
        at a time (bisection), so the culprit ends up alone and its batchmates go free. Requests that
        arrive meanwhile wait and start when the isolation ends."""
        failing = [s for s in self.states.values() if s.in_engine]
        for s in failing:
            self.engine.abort_request(s.run_id, FinishKind.ABANDONED)
            self._forget(s.run_id)
        self._group = None
        if not failing:
            return
        if len(failing) == 1:
            (state,) = failing
            state.attempts += 1
            if state.attempts >= self._max_attempts:
                reason = f"failed {state.attempts} times alone in the engine: {reason}"[:1000]
                upd.poisoned.append(Poisoned(state, reason))
                return
            self._groups.appendleft([self._restart(state).run_id])
            return
        restarted = [self._restart(s).run_id for s in failing]
        half = len(restarted) // 2
        self._groups.appendleft(restarted[half:])
        self._groups.appendleft(restarted[:half])
        log.warning("worker.isolating", failing=len(failing), groups=len(self._groups))

    def _restart(self, s: RequestState) -> RequestState:
        state = self._start(
            s.request,
            s.prompt_ids,
            s.content_type,
            s.intake_s,
            s.partition,
            s.offset,
            s.record,
            s.attempts,
            launch=False,
        )
        state.tier = s.tier
        state.requested_model = s.requested_model
        state.started_attempts = s.started_attempts
        return state

    def _advance_isolation(self) -> None:
        """While isolating: when the current group has finished, launch the next; after the last one,
        launch every request held meanwhile."""
        if self._group is not None:
            self._group &= self.states.keys()
            if self._group:
                return
            self._group = None
        if self._groups and (self._launching or any(s.in_engine for s in self.states.values())):
            return  # a suspect's group waits until the engine holds nothing else (it runs alone)
        while self._groups:
            group = [r for r in self._groups.popleft() if r in self.states]
            if group:
                self._group = set(group)
                for run_id in group:
                    self._launch(self.states[run_id])
                return
        while self._held:
            state = self.states.get(self._held.popleft())
            if state is not None:
                self._launch(state)
