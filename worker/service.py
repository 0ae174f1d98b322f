"""The worker's Kafka loop: consume `llm.requests.<model>` in group
`llm-worker-<model>`, admit into the engine, stream replies, commit offsets
only after each request's terminal event has its outcome.

Long-lived tasks share one event loop, each supervised (one that dies ends the
process non-zero, so Kafka hands its partitions to another worker): intake
(consume + admit, with backpressure), the engine driver (step in a thread,
turn outputs into events), control (cancel messages, read by every worker of
the model), commits, status/health, and the watchdog (engine progress and
deadlines the worker enforces itself). Every record the worker produces goes
through an outbox (worker/outbox.py): the engine loop never awaits a send, and
one unwritable destination never blocks a partition.

Whatever a record holds, it ends with an outcome: answered, refused with a code
(with a DLQ copy), or left uncommitted for a retry; no exception skips one.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections import OrderedDict, deque
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from contracts.codec import Codec, ContentType, DecodeFailure, content_type_from_headers
from contracts.messages import Cancel, Chunk, Done, Error, ErrorCode, Request, UsageRecord, WorkerStatus
from contracts.topics import Headers
from contracts.validation import InvalidRequest, is_topic_name, validate_request
from fleet.health import beat
from fleet.kafka import ProducerPurpose, make_consumer, make_producer, with_retry
from fleet.records import dlq_record
from fleet.settings import ModelSettings, Settings
from worker.engine.api import Engine, EngineDied, EngineRequest, FinishKind, SamplingParams, StepOutput
from worker.inputs import prompt_token_ids
from worker.offsets import OffsetTracker
from worker.outbox import Delivery, Outbox
from worker.output import ChunkCoalescer, IncrementalDetokenizer
from worker.state import RequestState

log = structlog.get_logger(__name__)

_TOKEN_USING = (FinishKind.STOP, FinishKind.LENGTH, FinishKind.CANCELLED, FinishKind.EXPIRED)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: WorkerService) -> None:
        self._svc = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._svc.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._svc.on_assigned(set(assigned))


class WorkerService:
    def __init__(
        self,
        settings: Settings,
        model: ModelSettings,
        engine: Engine,
        tokenizer: Any,
        *,
        max_model_len: int,
    ) -> None:
        self.settings = settings
        self.model = model
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.tun = settings.worker
        self.topics = settings.kafka.topics
        self.codec = Codec()
        self.worker_id = f"{model.name}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.states: dict[str, RequestState] = {}  # run_id -> state
        self.by_request: dict[str, set[str]] = {}  # request id -> run ids held here
        self.offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self.paused = False
        self.max_uncommitted_seen = 0
        self.counts = {
            "done": 0,
            "errors": 0,
            "abandoned": 0,
            "tokens": 0,
            "consumed": 0,
            "committed": 0,
            "engine_steps": 0,
            "engine_failures": 0,
            "answered_again": 0,
            "expired_by_worker": 0,
        }
        self._answered: OrderedDict[str, Done] = OrderedDict()  # request id -> the `done` sent for it
        # isolating a failing engine step: groups of run ids that run alone, one group at a time
        self._groups: deque[list[str]] = deque()
        self._group: set[str] | None = None  # the group in the engine now (None: not isolating)
        self._held: deque[str] = deque()  # runs admitted while isolating, started when it ends
        self._wake = asyncio.Event()
        self._commit_wake = asyncio.Event()
        self._closing = False
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._usage_producer: AIOKafkaProducer | None = None
        self._outbox: Outbox | None = None
        self._usage: Outbox | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop: asyncio.Event | None = None
        self._fatal: str | None = None  # set when the engine died or hung, or a task died: exit without draining
        self._progress_s = time.monotonic()  # the engine's last step (or the last time it had nothing to do)
        self._intake_beat_s = time.monotonic()

    # -- lifecycle ---------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        structlog.contextvars.bind_contextvars(model=self.model.name, worker=self.worker_id)
        self._stop = stop
        self._producer = make_producer(self.settings, purpose=ProducerPurpose.REPLIES)
        self._usage_producer = make_producer(self.settings, purpose=ProducerPurpose.USAGE)
        instance = f"{self.tun.group_instance_id}-{self.model.name}" if self.tun.group_instance_id else None
        self._consumer = make_consumer(
            self.settings,
            group_id=self.topics.worker_group(self.model.name),
            max_poll_records=self.model.max_inflight,
            **({"group_instance_id": instance} if instance else {}),
        )
        await with_retry("worker.producer.start", self._producer.start, stop=stop)
        await with_retry("worker.usage.start", self._usage_producer.start, stop=stop)
        self._outbox = Outbox(self._producer, self.tun, name="replies", known_topic=self.topics.status)
        self._usage = Outbox(self._usage_producer, self.tun, name="usage", known_topic=self.topics.status)
        self._consumer.subscribe([self.topics.model(self.model.name)], listener=_Rebalance(self))
        await with_retry("worker.consumer.start", self._consumer.start, stop=stop)
        stats = self.engine.stats()
        log.info(
            "worker.started",
            topic=self.topics.model(self.model.name),
            group=self.topics.worker_group(self.model.name),
            group_instance_id=instance,
            weights_bytes=stats.weights_bytes,
            kv_cache_bytes=stats.kv_cache_bytes,
            simulated=self.engine.simulated,
        )
        tasks = [
            asyncio.create_task(self._intake_loop(stop), name="intake"),
            asyncio.create_task(self._engine_loop(), name="engine"),
            asyncio.create_task(self._control_loop(stop), name="control"),
            asyncio.create_task(self._commit_loop(), name="commit"),
            asyncio.create_task(self._status_loop(stop), name="status"),
            asyncio.create_task(self._watchdog_loop(stop), name="watchdog"),
        ]
        for t in tasks:
            t.add_done_callback(self._supervise)
        try:
            await stop.wait()
            if self._fatal is None:
                await self._drain()
        finally:
            self._closing = True
            self._wake.set()
            self._commit_wake.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._fatal is None:
                await self._outbox.close(timeout_s=5.0)
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._usage.close(timeout_s=2.0)
            await self._outbox.close(timeout_s=0)
            await self._commit_now()
            await self._consumer.stop()  # leaves the group (a static member stays until its session ends)
            await self._usage_producer.stop()
            await self._producer.stop()
            self.engine.close()
            log.info(
                "worker.stopped",
                undeliverable=self._outbox.undeliverable + self._usage.undeliverable,
                **self.counts,
            )
        if self._fatal is not None:
            # non-zero exit: the orchestrator restarts the worker; its uncommitted requests go to another one
            raise SystemExit(f"worker {self.worker_id}: {self._fatal}")

    def _supervise(self, task: asyncio.Task[Any]) -> None:
        """Done-callback of every long-lived task: one that ends while the worker runs is fatal."""
        if task.cancelled() or self._closing:
            return
        exc = task.exception()
        if exc is None and self._stop is not None and self._stop.is_set():
            return  # a loop that saw the stop
        log.error("worker.task_died", task=task.get_name(), exc_info=exc)
        self._die(f"task {task.get_name()} ended: {exc!r}")

    def _die(self, reason: str) -> None:
        """Exit non-zero without draining: what this worker holds stays uncommitted for another one."""
        if self._fatal is None:
            self._fatal = reason
        for run_id in list(self.states):
            self._abandon(run_id)
        if self._stop is not None:
            self._stop.set()

    async def _drain(self) -> None:
        """SIGTERM: stop intake, let in-flight requests finish within the grace, abandon the rest."""
        assert self._consumer is not None
        self._consumer.pause(*self._consumer.assignment())
        self.paused = True
        log.info("worker.draining", in_flight=len(self.states), grace_s=self.tun.drain_grace_s)
        deadline = time.monotonic() + self.tun.drain_grace_s
        while self.offsets.unfinished() and time.monotonic() < deadline:  # noqa: ASYNC110 - a bounded poll, not a wait for one event
            await asyncio.sleep(0.05)
        for run_id in list(self.states):
            self._abandon(run_id)

    # -- intake ------------------------------------------------------------
    @property
    def uncommitted(self) -> int:
        return self.offsets.unfinished()

    async def _intake_loop(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None
        bound = self.model.max_inflight
        resume_at = bound - max(1, bound // 4)  # hysteresis: no pause/resume flapping at the bound
        while not stop.is_set():
            self._intake_beat_s = time.monotonic()
            room = bound - self.uncommitted
            if room <= 0 or (self.paused and self.uncommitted > resume_at):
                self._set_paused(True)
                await asyncio.sleep(0.01)
                continue
            self._set_paused(False)
            try:
                batch = await self._consumer.getmany(timeout_ms=50, max_records=room)
            except KafkaError as exc:
                log.warning("worker.fetch_error", error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            for tp, records in batch.items():
                for rec in records:
                    self._admit_safely(tp, rec)

    def _set_paused(self, paused: bool) -> None:
        assert self._consumer is not None
        if paused == self.paused:
            return
        self.paused = paused
        parts = self._consumer.assignment()
        if paused:
            self._consumer.pause(*parts)
        else:
            self._consumer.resume(*parts)
        log.info("worker.paused" if paused else "worker.resumed", uncommitted=self.uncommitted)

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("worker.assigned", partitions=sorted(tp.partition for tp in assigned))
        if self.paused and self._consumer is not None:
            self._consumer.pause(*assigned)  # a rebalance resumes everything: re-apply backpressure

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Stop taking from revoked partitions, let their requests finish within the grace,
        commit what finished (retrying a failed commit), abandon the rest uncommitted for the new owner."""
        if not revoked:
            return
        held = [s for s in self.states.values() if s.partition in revoked]
        log.info("worker.revoked", partitions=sorted(tp.partition for tp in revoked), in_flight=len(held))
        deadline = time.monotonic() + self.tun.revoke_grace_s
        while any(self.offsets.unfinished(tp) for tp in revoked) and time.monotonic() < deadline:  # noqa: ASYNC110 - a bounded poll, not a wait for one event
            await asyncio.sleep(0.02)
        for attempt in range(3):
            if await self._commit_now(only=revoked) or not any(
                tp in revoked for tp in self.offsets.uncommitted_partitions()
            ):
                break
            log.warning("worker.revoke_commit_retry", attempt=attempt + 1)
            await asyncio.sleep(self.tun.commit_retry_ms / 1000)
        for s in list(self.states.values()):
            if s.partition in revoked:
                self._abandon(s.run_id)
        for tp in revoked:
            self.offsets.forget(tp)

    def _admit_safely(self, tp: TopicPartition, rec: ConsumerRecord[Any, Any]) -> None:
        """Any exception while admitting one record becomes that record's outcome (`internal`, with a
        DLQ copy), never the end of intake."""
        self.offsets.take(tp, rec.offset)
        self.counts["consumed"] += 1
        self.max_uncommitted_seen = max(self.max_uncommitted_seen, self.uncommitted)
        try:
            self._admit(tp, rec)
        except Exception as exc:
            log.exception("worker.admit_failed", partition=tp.partition, offset=rec.offset)
            try:
                reason = f"the worker failed on this record: {exc!r}"[:1000]
                self._reject(tp, rec, ErrorCode.INTERNAL, reason, None, None)
            except Exception:  # not even a DLQ copy: the record still gets its outcome (logged, committed)
                log.exception("worker.reject_failed", partition=tp.partition, offset=rec.offset)
                self._finish_offset(tp, rec.offset)

    def _admit(self, tp: TopicPartition, rec: ConsumerRecord[Any, Any]) -> None:
        headers = list(rec.headers or ())
        hdrs = {k: v for k, v in headers}
        ct = _content_type(headers)
        if ct is None:
            reason = "the content-type header is null or names no supported type"
            self._reject(tp, rec, ErrorCode.INVALID_ENCODING, reason, None, None)
            return
        try:
            req = self.codec.decode_request(rec.value or b"", ct)
            validate_request(req, self.settings.limits)
        except (DecodeFailure, InvalidRequest) as exc:
            salvaged = getattr(exc, "salvaged", {})
            rid = salvaged.get("id") if isinstance(exc, DecodeFailure) else req.id
            reply_to = salvaged.get("reply_to") if isinstance(exc, DecodeFailure) else req.reply_to
            self._reject(tp, rec, exc.code, exc.message, rid, reply_to)
            return
        answered = self._answered.get(req.id)
        if answered is not None and req.id not in self.by_request:
            # a re-send (or a redelivery) of an id this worker finished: the same answer, not a new run
            self.counts["answered_again"] += 1
            log.info("worker.answered_again", request_id=req.id[:200], run_id=answered.run_id)
            fut = self._send(req.reply_to, req.id, answered, ct)
            self._track([fut], tp, rec.offset)
            return
        intake_s = _header_ms(hdrs.get(Headers.INTAKE_MS), rec.timestamp) / 1000
        now = time.time()
        if req.deadline_ms is not None and now * 1000 >= req.deadline_ms:
            self._reject(
                tp,
                rec,
                ErrorCode.EXPIRED,
                f"deadline passed {now * 1000 - req.deadline_ms:.0f} ms before the worker took it",
                req.id,
                req.reply_to,
                ct,
                dlq=False,
            )
            return
        try:
            ids = prompt_token_ids(req, self.tokenizer, self.max_model_len)
        except InvalidRequest as exc:
            self._reject(tp, rec, exc.code, exc.message, req.id, req.reply_to, ct)
            return
        self._start(rec, tp, req, ct, intake_s, ids)

    def _start(
        self,
        rec: ConsumerRecord[Any, Any],
        tp: TopicPartition,
        req: Request,
        ct: ContentType,
        intake_s: float,
        ids: list[int],
        attempts: int = 0,
        *,
        launch: bool = True,
    ) -> RequestState:
        """A request under a fresh run id: into the engine, or held while a failing step is isolated."""
        run_id = uuid.uuid4().hex[:16]
        state = RequestState(
            request=req,
            run_id=run_id,
            partition=tp,
            offset=rec.offset,
            content_type=ct,
            intake_s=intake_s,
            detok=IncrementalDetokenizer(self.tokenizer, req.stop),
            coalescer=ChunkCoalescer(self.settings.latency.chunk_interval_ms, self.settings.latency.chunk_max_tokens),
            model=self.model.name,
            record=rec,
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
        req = state.request
        max_tokens = min(req.max_tokens, self.max_model_len - len(state.prompt_ids))
        if not self.engine.has_unfinished():
            self._progress_s = time.monotonic()  # the watchdog counts from here, not from the end of an idle spell
        try:
            self.engine.add_request(
                EngineRequest(
                    request_id=state.run_id,
                    prompt_token_ids=state.prompt_ids,
                    params=SamplingParams(
                        max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, seed=req.seed
                    ),
                    deadline_s=req.deadline_ms / 1000 if req.deadline_ms else None,
                    arrival_s=time.time(),
                )
            )
        except EngineDied as exc:  # uncommitted: Kafka hands it to another worker
            self._on_engine_died(str(exc))
            return
        state.in_engine = True
        log.debug(
            "worker.admitted",
            request_id=req.id,
            run_id=state.run_id,
            prompt_tokens=len(state.prompt_ids),
            partition=state.partition.partition,
        )
        self._wake.set()

    def _reject(
        self,
        tp: TopicPartition,
        rec: ConsumerRecord[Any, Any],
        code: ErrorCode,
        message: str,
        request_id: str | None,
        reply_to: str | None,
        ct: ContentType = ContentType.JSON,
        *,
        dlq: bool = True,
    ) -> None:
        """Refuse a record: an error event to its reply topic (when it names one) and a DLQ copy (cut to
        fit, noted in a header); the offset is finished once both have their outcome."""
        assert self._outbox is not None
        log.info("worker.reject", request_id=request_id, code=code.value, reason=message[:200], dlq=dlq)
        futs: list[asyncio.Future[Delivery]] = []
        if isinstance(request_id, str) and request_id and isinstance(reply_to, str) and is_topic_name(reply_to):
            ev = Error(id=request_id[:200], code=code, message=message, retriable=code.retriable)
            futs.append(self._send(reply_to, request_id[:200], ev, ct))
        if dlq:
            value, key, headers = dlq_record(
                rec.value,
                rec.key if isinstance(rec.key, bytes) else None,
                rec.headers,
                rec.topic,
                rec.partition,
                rec.offset,
                code.value,
                message,
                self.settings.kafka.max_request_bytes,
            )
            futs.append(self._outbox.submit(self.topics.dlq, value, key=key, headers=headers, what=f"dlq {code.value}"))
        self.counts["errors"] += 1
        self._track(futs, tp, rec.offset)

    # -- engine ------------------------------------------------------------
    async def _engine_loop(self) -> None:
        while not self._closing:
            self._advance_isolation()
            if not self.engine.has_unfinished():
                self._progress_s = time.monotonic()  # nothing to do counts as progress
                self._wake.clear()
                if not self.engine.has_unfinished() and not self._groups:
                    await self._wake.wait()
                continue
            steps_before = self._engine_steps()
            try:
                outs = await asyncio.to_thread(self.engine.step)
            except EngineDied as exc:
                self._on_engine_died(str(exc))
                return
            except Exception as exc:
                self.counts["engine_failures"] += 1
                log.exception("worker.engine_failed", running=sum(s.in_engine for s in self.states.values()))
                self._on_step_failed(f"{type(exc).__name__}: {exc}")
                continue
            steps = self._engine_steps()
            if outs or steps is None or steps != steps_before:
                self._progress_s = time.monotonic()
                self.counts["engine_steps"] += 1
            now = time.time()
            for out in outs:
                self._on_output(out, now)

    def _engine_steps(self) -> int | None:
        """Steps the engine reported (an engine in its own process); None: a returned step is a step."""
        steps = getattr(self.engine, "steps_seen", None)
        return steps if isinstance(steps, int) else None

    def _on_engine_died(self, reason: str) -> None:
        """The model's process is gone with the requests it held: abandon them uncommitted and stop."""
        log.error("worker.engine_process_died", reason=reason, in_flight=len(self.states))
        self._die(f"engine process died: {reason}")

    def _on_output(self, out: StepOutput, now: float) -> None:
        state = self.states.get(out.request_id)
        if state is None or state.finished:
            return  # abandoned, expired by the worker, or already finished by a stop string
        for chunk in state.on_output(out, now):
            self._send_event(state, chunk)
        finish = out.finished
        if finish is None and state.detok.stopped:
            self.engine.abort_request(state.run_id, FinishKind.ABANDONED)  # free the slot now
            finish = FinishKind.STOP
        if finish is None:
            return
        if finish is FinishKind.ABANDONED:
            self._abandon(state.run_id)
            return
        self._finish(state, finish, now)

    def _finish(self, state: RequestState, kind: FinishKind, now: float) -> None:
        events = state.finish(kind, now)
        futs = [self._send_event(state, ev) for ev in events]
        self._forget(state.run_id)
        terminal = events[-1]
        if isinstance(terminal, Done):
            self._remember_answer(state.request.id, terminal)  # errors are not replayed: a retry may fare better
            self.counts["done"] += 1
            self.counts["tokens"] += terminal.usage.completion_tokens
        else:
            self.counts["errors"] += 1
        if kind in _TOKEN_USING:
            self._send_usage(state, kind)
        log.debug("worker.finished", request_id=state.request.id, run_id=state.run_id, kind=kind.value)
        self._track(futs, state.partition, state.offset)

    def _remember_answer(self, request_id: str, terminal: Done) -> None:
        self._answered[request_id] = terminal
        self._answered.move_to_end(request_id)
        while len(self._answered) > self.tun.answered_ids:
            self._answered.popitem(last=False)

    # -- isolating a failing step ------------------------------------------
    @property
    def _isolating(self) -> bool:
        return self._group is not None or bool(self._groups)

    def _on_step_failed(self, reason: str) -> None:
        """The engine raised on a step: find the request that fails it instead of charging all.

        Every request the engine held is started again (new run id). One that failed alone is charged
        an attempt (`poison` to the DLQ after `max_attempts`); several are split in two groups that run
        one group at a time (bisection), so the culprit ends up alone and its batchmates go free.
        Requests that arrive meanwhile wait and start when the isolation ends."""
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
            if state.attempts >= self.tun.max_attempts:
                self._reject(
                    state.partition,
                    state.record,
                    ErrorCode.POISON,
                    f"failed {state.attempts} times alone in the engine: {reason}"[:1000],
                    state.request.id,
                    state.request.reply_to,
                    state.content_type,
                )
                return
            self._groups.appendleft([self._restart(state).run_id])
            return
        restarted = [self._restart(s).run_id for s in failing]
        half = len(restarted) // 2
        self._groups.appendleft(restarted[half:])
        self._groups.appendleft(restarted[:half])
        log.warning("worker.isolating", failing=len(failing), groups=len(self._groups))

    def _restart(self, s: RequestState) -> RequestState:
        return self._start(
            s.record, s.partition, s.request, s.content_type, s.intake_s, s.prompt_ids, s.attempts, launch=False
        )

    def _advance_isolation(self) -> None:
        """While isolating: when the current group has finished, launch the next; after the last one,
        launch every request held meanwhile."""
        if self._group is not None:
            self._group &= self.states.keys()
            if self._group:
                return
            self._group = None
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

    def _abandon(self, run_id: str) -> None:
        state = self.states.get(run_id)
        if state is None:
            return
        if state.in_engine:
            self.engine.abort_request(run_id, FinishKind.ABANDONED)
        self._forget(run_id)
        self.counts["abandoned"] += 1
        log.info("worker.abandoned", request_id=state.request.id, run_id=run_id, partition=state.partition.partition)

    def _forget(self, run_id: str) -> None:
        state = self.states.pop(run_id, None)
        if state is not None:
            runs = self.by_request.get(state.request.id)
            if runs is not None:
                runs.discard(run_id)
                if not runs:
                    del self.by_request[state.request.id]

    # -- replies and usage (through the outbox) -----------------------------
    def _send_event(self, state: RequestState, ev: Chunk | Done | Error) -> asyncio.Future[Delivery]:
        return self._send(state.request.reply_to, state.request.id, ev, state.content_type)

    def _send(self, topic: str, key: str, ev: Any, ct: ContentType) -> asyncio.Future[Delivery]:
        assert self._outbox is not None
        value = self.codec.encode(ev, ct)
        headers = [(Headers.CONTENT_TYPE, ct.value.encode())]
        return self._outbox.submit(topic, value, key=key.encode(), headers=headers, what=key)

    def _send_usage(self, state: RequestState, kind: FinishKind) -> None:
        """One usage record per run that consumed tokens, whatever way it ended; retried until delivered."""
        assert self._usage is not None
        prompt, completion = state.num_prompt_tokens, state.detok.num_tokens
        if not prompt and not completion:
            return
        m = self.model
        cost = (prompt * m.price_per_1k_prompt + completion * m.price_per_1k_completion) / 1000
        rec = UsageRecord(
            id=state.request.id,
            model=m.name,
            tenant=state.request.tenant,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=round(cost, 8),
            ts_ms=int(time.time() * 1000),
            finish=kind.value,
            run_id=state.run_id,
        )
        self._usage.submit(self.topics.usage, self.codec.encode(rec), key=state.request.id.encode(), what="usage")

    # -- offsets -----------------------------------------------------------
    def _track(self, futs: list[asyncio.Future[Delivery]], tp: TopicPartition, offset: int) -> None:
        """Finish the offset once every record of the request has its outcome (delivered or undeliverable)."""
        task = asyncio.ensure_future(self._await_outcome(futs, tp, offset))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_outcome(self, futs: list[asyncio.Future[Delivery]], tp: TopicPartition, offset: int) -> None:
        try:
            await asyncio.gather(*futs)
        except asyncio.CancelledError:
            # the outbox closed first: the terminal event may not have landed, leave the offset for a redo
            log.info("worker.outcome_unknown", partition=tp.partition, offset=offset)
            return
        self._finish_offset(tp, offset)

    def _finish_offset(self, tp: TopicPartition, offset: int) -> None:
        self.offsets.finish(tp, offset)
        self._commit_wake.set()

    async def _commit_loop(self) -> None:
        retry = False
        while not self._closing:
            try:
                await asyncio.wait_for(self._commit_wake.wait(), self.tun.commit_retry_ms / 1000 if retry else None)
            except TimeoutError:
                pass
            self._commit_wake.clear()
            retry = not await self._commit_now()
            await asyncio.sleep(0.01)  # debounce: one commit covers a burst of finishes

    async def _commit_now(self, only: set[TopicPartition] | None = None) -> bool:
        """Commit what moved; True when the broker confirmed it (or nothing was due)."""
        assert self._consumer is not None
        offsets = self.offsets.to_commit()
        assigned = self._consumer.assignment()
        keep = {tp: o for tp, o in offsets.items() if tp in assigned and (only is None or tp in only)}
        self.offsets.failed({tp: o for tp, o in offsets.items() if tp not in keep})  # handed out again later
        if not keep:
            return True
        try:
            await self._consumer.commit(keep)
        except (KafkaError, OSError) as exc:
            self.offsets.failed(keep)
            log.warning("worker.commit_failed", error=repr(exc), offsets={tp.partition: o for tp, o in keep.items()})
            return False
        self.offsets.confirmed(keep)
        self.counts["committed"] += len(keep)
        return True

    # -- watchdog: engine progress and the worker's own deadlines ----------
    def _stalled_s(self) -> float:
        """How long the engine has held work without a step."""
        if not self.engine.has_unfinished():
            return 0.0
        return max(0.0, time.monotonic() - self._progress_s)

    async def _watchdog_loop(self, stop: asyncio.Event) -> None:
        grace_ms = self.tun.deadline_grace_ms
        while not stop.is_set():
            now_ms = time.time() * 1000
            for state in list(self.states.values()):
                dl = state.request.deadline_ms
                if dl is not None and now_ms > dl + grace_ms and not state.finished:
                    # the engine checks deadlines every step, so this one is stuck or far behind
                    self.counts["expired_by_worker"] += 1
                    log.warning("worker.expired_by_worker", request_id=state.request.id, run_id=state.run_id)
                    if state.in_engine:
                        self.engine.abort_request(state.run_id, FinishKind.EXPIRED)
                    self._finish(state, FinishKind.EXPIRED, now_ms / 1000)
            stalled = self._stalled_s()
            if stalled > self.tun.engine_watchdog_s:
                log.error(
                    "worker.engine_stalled",
                    stalled_s=round(stalled, 1),
                    watchdog_s=self.tun.engine_watchdog_s,
                    in_flight=len(self.states),
                )
                kill = getattr(self.engine, "kill", None)
                if callable(kill):
                    kill()
                self._die(f"engine made no progress for {stalled:.0f} s")
                return
            await asyncio.sleep(0.2)

    # -- control and status -----------------------------------------------
    async def _control_loop(self, stop: asyncio.Event) -> None:
        """Every worker of the model reads every control message (no group)."""
        consumer = make_consumer(
            self.settings, group_id=None, fetch_max_wait_ms=self.settings.latency.background_fetch_max_wait_ms
        )
        await with_retry("worker.control.start", consumer.start, stop=stop)
        try:
            parts = await with_retry(
                "worker.control.partitions", lambda: _partitions(consumer, self.topics.control), stop=stop
            )
            consumer.assign(parts)
            await consumer.seek_to_end(*parts)
            while not stop.is_set():
                try:
                    batch = await consumer.getmany(timeout_ms=50)
                except KafkaError as exc:
                    log.warning("worker.control_fetch_error", error=repr(exc))
                    await asyncio.sleep(0.5)
                    continue
                for records in batch.values():
                    for rec in records:
                        try:
                            self._on_control(rec)
                        except Exception:  # one odd record never disables cancellation
                            log.exception("worker.control_failed", offset=rec.offset)
        finally:
            await consumer.stop()

    def _on_control(self, rec: ConsumerRecord[Any, Any]) -> None:
        ct = _content_type(list(rec.headers or ()))
        if ct is None:
            log.warning("worker.bad_control", code=ErrorCode.INVALID_ENCODING.value, reason="unreadable content-type")
            return
        try:
            msg = self.codec.decode_control(rec.value or b"", ct)
        except DecodeFailure as exc:
            log.warning("worker.bad_control", code=exc.code.value, reason=exc.message[:200], offset=rec.offset)
            return
        if isinstance(msg, Cancel):
            runs = list(self.by_request.get(msg.id, set()))
            for run_id in runs:
                state = self.states[run_id]
                if state.in_engine:
                    self.engine.abort_request(run_id, FinishKind.CANCELLED)
                else:  # held back while isolating: nothing to stop, answer now
                    self._finish(state, FinishKind.CANCELLED, time.time())
            self._wake.set()
            log.info("worker.cancel", request_id=msg.id[:200], held=bool(runs))

    def ready(self) -> tuple[bool, str]:
        """Readiness from progress: intake is polling, the engine steps while it holds work."""
        if self._fatal is not None:
            return False, self._fatal
        stalled = self._stalled_s()
        if stalled > min(self.tun.engine_watchdog_s / 2, 10.0):
            return False, f"engine stalled {stalled:.1f} s"
        intake_age = time.monotonic() - self._intake_beat_s
        if intake_age > 10.0:
            return False, f"intake idle {intake_age:.1f} s"
        return True, "ok"

    async def _status_loop(self, stop: asyncio.Event) -> None:
        assert self._producer is not None
        last_tokens, last_t = self.counts["tokens"], time.monotonic()
        while not stop.is_set():
            try:
                s = self.engine.stats()
            except EngineDied as exc:
                self._on_engine_died(str(exc))
                return
            now_t = time.monotonic()
            rate = (self.counts["tokens"] - last_tokens) / max(1e-3, now_t - last_t)
            last_tokens, last_t = self.counts["tokens"], now_t
            ready, why = self.ready()
            st = WorkerStatus(
                worker_id=self.worker_id,
                model=self.model.name,
                ts_ms=int(time.time() * 1000),
                running=s.running,
                waiting=s.waiting,
                capacity=self.model.max_inflight,
                state="stalled" if not ready else ("paused" if self.paused else "serving"),
                weights_bytes=s.weights_bytes,
                kv_cache_bytes=s.kv_cache_bytes,
                kv_budget_bytes=s.kv_budget_bytes,
                tokens_per_s=round(rate, 2),
                uncommitted=self.uncommitted,
                max_uncommitted=self.max_uncommitted_seen,
                spec_draft_tokens=s.spec_draft_tokens,
                spec_accepted_tokens=s.spec_accepted_tokens,
                spec_acceptance=s.spec_acceptance,
            )
            progress = {k: self.counts[k] for k in ("consumed", "committed", "engine_steps")}
            try:
                await self._producer.send(self.topics.status, self.codec.encode(st), key=self.worker_id.encode())
            except KafkaError as exc:
                log.warning("worker.status_failed", error=repr(exc))
                ready, why = False, repr(exc)[:200]
            beat(self.settings.health_file, ready=ready, worker=self.worker_id, state=st.state, why=why, **progress)
            await asyncio.sleep(self.settings.latency.status_interval_ms / 1000)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(50):
        await consumer.topics()  # refreshes cluster metadata
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        await asyncio.sleep(0.1)
    raise KafkaError(f"topic {topic} has no partitions (does it exist?)")


def _content_type(headers: list[tuple[str, Any]]) -> ContentType | None:
    """The record's content type; None when its header is unreadable (a null value, say)."""
    try:
        return content_type_from_headers(headers)
    except Exception:  # DecodeFailure for an unknown type; AttributeError for a null value; ...
        return None


def _header_ms(raw: bytes | None, fallback: int) -> int:
    try:
        return int(raw) if raw else fallback
    except ValueError:
        return fallback
