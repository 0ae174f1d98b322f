"""The worker's Kafka loop: consume `llm.requests.<model>` in group
`llm-worker-<model>`, admit into the engine, stream replies, commit offsets
only after each request's terminal event is acknowledged.

Three tasks share one event loop: intake (consume + admit, with
backpressure), the engine loop (step in a thread, stream outputs), and
control (cancel messages, read by every worker of the model). A committer
moves offsets as out-of-order requests finish.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
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
from fleet.runtime import log_task_failure
from fleet.settings import ModelSettings, Settings
from worker.engine.api import Engine, EngineDied, EngineRequest, FinishKind, SamplingParams, StepOutput
from worker.inputs import prompt_token_ids
from worker.offsets import OffsetTracker
from worker.output import ChunkCoalescer, IncrementalDetokenizer
from worker.state import RequestState

log = structlog.get_logger(__name__)


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
        revoke_grace_s: float = 5.0,
        drain_grace_s: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        self.settings = settings
        self.model = model
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.revoke_grace_s = revoke_grace_s
        self.drain_grace_s = drain_grace_s
        self.max_attempts = max_attempts
        self.topics = settings.kafka.topics
        self.codec = Codec()
        self.worker_id = f"{model.name}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.states: dict[str, RequestState] = {}  # run_id -> state
        self.by_request: dict[str, set[str]] = {}  # request id -> run ids held here
        self.offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self.paused = False
        self.max_uncommitted_seen = 0
        self.counts = {"done": 0, "errors": 0, "abandoned": 0, "undeliverable": 0, "tokens": 0}
        self._wake = asyncio.Event()
        self._commit_wake = asyncio.Event()
        self._closing = False
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._usage: AIOKafkaProducer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop: asyncio.Event | None = None
        self._fatal: str | None = None  # set when the engine process died: exit without draining

    # -- lifecycle ---------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        structlog.contextvars.bind_contextvars(model=self.model.name, worker=self.worker_id)
        self._stop = stop
        self._producer = make_producer(self.settings, purpose=ProducerPurpose.REPLIES)
        self._usage = make_producer(self.settings, purpose=ProducerPurpose.USAGE)
        self._consumer = make_consumer(
            self.settings, group_id=self.topics.worker_group(self.model.name), max_poll_records=self.model.max_inflight
        )
        await with_retry("worker.producer.start", self._producer.start, stop=stop)
        await with_retry("worker.usage.start", self._usage.start, stop=stop)
        self._consumer.subscribe([self.topics.model(self.model.name)], listener=_Rebalance(self))
        await with_retry("worker.consumer.start", self._consumer.start, stop=stop)
        stats = self.engine.stats()
        log.info(
            "worker.started",
            topic=self.topics.model(self.model.name),
            group=self.topics.worker_group(self.model.name),
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
        ]
        for t in tasks:
            t.add_done_callback(log_task_failure)
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
            await self._commit_now()
            await self._consumer.stop()  # leaves the group
            await self._usage.stop()
            await self._producer.stop()
            self.engine.close()
            log.info("worker.stopped", **self.counts)
        if self._fatal is not None:
            # non-zero exit: the orchestrator restarts the worker; its uncommitted requests go to another one
            raise SystemExit(f"worker {self.worker_id}: {self._fatal}")

    async def _drain(self) -> None:
        """SIGTERM: stop intake, let in-flight requests finish within the grace, abandon the rest."""
        assert self._consumer is not None
        self._consumer.pause(*self._consumer.assignment())
        self.paused = True
        log.info("worker.draining", in_flight=len(self.states), grace_s=self.drain_grace_s)
        deadline = time.monotonic() + self.drain_grace_s
        while self.offsets.unfinished() and time.monotonic() < deadline:  # noqa: ASYNC110 - a bounded poll, not a wait for one event
            await asyncio.sleep(0.05)
        await asyncio.gather(*self._tasks, return_exceptions=True)
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
                    await self._admit(tp, rec)

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
        commit what finished, abandon the rest uncommitted for the new owner."""
        if not revoked:
            return
        held = [s for s in self.states.values() if s.partition in revoked]
        log.info("worker.revoked", partitions=sorted(tp.partition for tp in revoked), in_flight=len(held))
        deadline = time.monotonic() + self.revoke_grace_s
        while any(self.offsets.unfinished(tp) for tp in revoked) and time.monotonic() < deadline:  # noqa: ASYNC110 - a bounded poll, not a wait for one event
            await asyncio.sleep(0.02)
        await self._commit_now(only=revoked)
        for s in list(self.states.values()):
            if s.partition in revoked:
                self._abandon(s.run_id)
        for tp in revoked:
            self.offsets.forget(tp)

    async def _admit(self, tp: TopicPartition, rec: ConsumerRecord[Any, Any]) -> None:
        self.offsets.take(tp, rec.offset)
        self.max_uncommitted_seen = max(self.max_uncommitted_seen, self.uncommitted)
        headers = list(rec.headers or ())
        hdrs = {k: v for k, v in headers}
        try:
            ct = content_type_from_headers(headers)
            req = self.codec.decode_request(rec.value or b"", ct)
            validate_request(req, self.settings.limits)
        except (DecodeFailure, InvalidRequest) as exc:
            salvaged = getattr(exc, "salvaged", {})
            rid = salvaged.get("id") if isinstance(exc, DecodeFailure) else req.id
            reply_to = salvaged.get("reply_to") if isinstance(exc, DecodeFailure) else req.reply_to
            await self._reject(tp, rec, exc.code, exc.message, rid, reply_to, ContentType.JSON, dlq=True)
            return
        intake_s = _header_ms(hdrs.get(Headers.INTAKE_MS), rec.timestamp) / 1000
        now = time.time()
        if req.deadline_ms is not None and now * 1000 >= req.deadline_ms:
            await self._reject(
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
            await self._reject(tp, rec, exc.code, exc.message, req.id, req.reply_to, ct, dlq=True)
            return
        await self._start(rec, tp, req, ct, intake_s, ids)

    async def _start(
        self,
        rec: ConsumerRecord[Any, Any],
        tp: TopicPartition,
        req: Request,
        ct: ContentType,
        intake_s: float,
        ids: list[int],
        attempts: int = 0,
    ) -> None:
        """Hand a request to the engine under a fresh run id."""
        now = time.time()
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
        max_tokens = min(req.max_tokens, self.max_model_len - len(ids))
        try:
            self.engine.add_request(
                EngineRequest(
                    request_id=run_id,
                    prompt_token_ids=ids,
                    params=SamplingParams(
                        max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, seed=req.seed
                    ),
                    deadline_s=req.deadline_ms / 1000 if req.deadline_ms else None,
                    arrival_s=now,
                )
            )
        except EngineDied as exc:  # uncommitted: Kafka hands it to another worker
            self._on_engine_died(str(exc))
            return
        log.debug("worker.admitted", request_id=req.id, run_id=run_id, prompt_tokens=len(ids), partition=tp.partition)
        self._wake.set()

    async def _reject(
        self,
        tp: TopicPartition,
        rec: ConsumerRecord[Any, Any],
        code: ErrorCode,
        message: str,
        request_id: str | None,
        reply_to: str | None,
        ct: ContentType,
        *,
        dlq: bool,
    ) -> None:
        assert self._producer is not None
        log.info("worker.reject", request_id=request_id, code=code.value, reason=message[:200], dlq=dlq)
        futs: list[asyncio.Future[Any]] = []
        if request_id and reply_to and is_topic_name(reply_to):
            ev = Error(id=request_id[:200], code=code, message=message, retriable=code.retriable)
            futs.append(await self._send(reply_to, request_id[:200], ev, ct))
        if dlq:
            headers = [(k, v) for k, v in (rec.headers or ()) if not k.startswith("fleet-error")] + [
                (Headers.ERROR_CODE, code.value.encode()),
                (Headers.ERROR_REASON, message[:1000].encode()),
                (Headers.SOURCE_TOPIC, rec.topic.encode()),
                (Headers.SOURCE_PARTITION, str(rec.partition).encode()),
                (Headers.SOURCE_OFFSET, str(rec.offset).encode()),
            ]
            futs.append(await self._producer.send(self.topics.dlq, rec.value or b"", key=rec.key, headers=headers))
        self.counts["errors"] += 1
        self._track(asyncio.gather(*futs), tp, rec.offset)

    # -- engine ------------------------------------------------------------
    async def _engine_loop(self) -> None:
        while not self._closing:
            if not self.engine.has_unfinished():
                self._wake.clear()
                if not self.engine.has_unfinished():
                    await self._wake.wait()
                continue
            try:
                outs = await asyncio.to_thread(self.engine.step)
            except EngineDied as exc:
                self._on_engine_died(str(exc))
                return
            except Exception as exc:
                log.exception("worker.engine_failed", running=len(self.states))
                await self._retry_or_poison(f"{type(exc).__name__}: {exc}")
                continue
            now = time.time()
            for out in outs:
                await self._on_output(out, now)

    def _on_engine_died(self, reason: str) -> None:
        """The model's process is gone with the requests it held: abandon them uncommitted and stop."""
        log.error("worker.engine_process_died", reason=reason, in_flight=len(self.states))
        self._fatal = f"engine process died: {reason}"
        for run_id in list(self.states):
            self._abandon(run_id)
        if self._stop is not None:
            self._stop.set()

    async def _on_output(self, out: StepOutput, now: float) -> None:
        state = self.states.get(out.request_id)
        if state is None or state.finished:
            return  # abandoned, or already finished by a stop string
        for chunk in state.on_output(out, now):
            await self._send_event(state, chunk)
        finish = out.finished
        if finish is None and state.detok.stopped:
            self.engine.abort_request(state.run_id, FinishKind.ABANDONED)  # free the slot now
            finish = FinishKind.STOP
        if finish is None:
            return
        if finish is FinishKind.ABANDONED:
            self._abandon(state.run_id)
            return
        await self._finish(state, finish, now)

    async def _finish(self, state: RequestState, kind: FinishKind, now: float) -> None:
        events = state.finish(kind, now)
        futs = [await self._send_event(state, ev) for ev in events]
        self._forget(state.run_id)
        terminal = events[-1]
        if isinstance(terminal, Done):
            self.counts["done"] += 1
            self.counts["tokens"] += terminal.usage.completion_tokens
            await self._send_usage(state, terminal)
        else:
            self.counts["errors"] += 1
        log.debug("worker.finished", request_id=state.request.id, run_id=state.run_id, kind=kind.value)
        self._track(asyncio.gather(*futs), state.partition, state.offset)

    async def _retry_or_poison(self, reason: str) -> None:
        """The engine raised: every request it held is started again under a new run id; one that
        has failed `max_attempts` times goes to the DLQ with the reason instead of blocking its partition."""
        for state in list(self.states.values()):
            self.engine.abort_request(state.run_id, FinishKind.ABANDONED)
            self._forget(state.run_id)
            state.attempts += 1
            if state.attempts >= self.max_attempts:
                await self._reject(
                    state.partition,
                    state.record,
                    ErrorCode.POISON,
                    f"failed {state.attempts} times in the engine: {reason}"[:1000],
                    state.request.id,
                    state.request.reply_to,
                    state.content_type,
                    dlq=True,
                )
                continue
            await self._start(
                state.record,
                state.partition,
                state.request,
                state.content_type,
                state.intake_s,
                state.prompt_ids,
                attempts=state.attempts,
            )

    def _abandon(self, run_id: str) -> None:
        state = self.states.get(run_id)
        if state is None:
            return
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

    # -- replies -----------------------------------------------------------
    async def _send_event(self, state: RequestState, ev: Chunk | Done | Error) -> asyncio.Future[Any]:
        return await self._send(state.request.reply_to, state.request.id, ev, state.content_type)

    async def _send(self, topic: str, key: str, ev: Any, ct: ContentType) -> asyncio.Future[Any]:
        assert self._producer is not None
        value = self.codec.encode(ev, ct)
        headers = [(Headers.CONTENT_TYPE, ct.value.encode())]
        attempts = 0
        while True:
            try:
                fut: asyncio.Future[Any] = await self._producer.send(topic, value, key=key.encode(), headers=headers)
                return fut
            except KafkaError as exc:
                attempts += 1
                if not getattr(exc, "retriable", True) or (attempts >= 3 and self._topic_missing(topic)):
                    # not writable (no such topic, no permission): the reply cannot be delivered, ever;
                    # waiting would stall the worker, so the request ends here, logged
                    self.counts["undeliverable"] += 1
                    log.error("worker.reply_undeliverable", topic=topic, request_id=key, error=repr(exc))
                    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                    done.set_result(None)
                    return done
                log.warning("worker.send_failed", topic=topic, error=repr(exc), attempt=attempts)
                await asyncio.sleep(0.5)

    def _topic_missing(self, topic: str) -> bool:
        """The broker answers (it knows our status topic) but not about `topic`."""
        assert self._producer is not None
        known = self._producer.client.cluster.topics()
        return self.topics.status in known and topic not in known

    async def _send_usage(self, state: RequestState, done: Done) -> None:
        assert self._usage is not None
        m = self.model
        cost = (
            done.usage.prompt_tokens * m.price_per_1k_prompt + done.usage.completion_tokens * m.price_per_1k_completion
        ) / 1000
        rec = UsageRecord(
            id=done.id,
            model=m.name,
            tenant=state.request.tenant,
            prompt_tokens=done.usage.prompt_tokens,
            completion_tokens=done.usage.completion_tokens,
            cost=round(cost, 8),
            ts_ms=int(time.time() * 1000),
            finish=done.finish_reason.value,
        )
        try:
            await self._usage.send(self.topics.usage, self.codec.encode(rec), key=done.id.encode())
        except KafkaError as exc:
            log.warning("worker.usage_failed", error=repr(exc))

    # -- offsets -----------------------------------------------------------
    def _track(self, fut: asyncio.Future[Any], tp: TopicPartition, offset: int) -> None:
        """Mark the offset finished once every event of the request is acknowledged."""
        task = asyncio.ensure_future(self._await_ack(fut, tp, offset))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_ack(self, fut: asyncio.Future[Any], tp: TopicPartition, offset: int) -> None:
        try:
            await fut
        except KafkaError as exc:
            # the terminal event may not have landed: leave the offset unfinished so the request is redone
            log.error("worker.terminal_not_acked", partition=tp.partition, offset=offset, error=repr(exc))
            return
        self.offsets.finish(tp, offset)
        self._commit_wake.set()

    async def _commit_loop(self) -> None:
        while not self._closing:
            await self._commit_wake.wait()
            self._commit_wake.clear()
            await self._commit_now()
            await asyncio.sleep(0.01)  # debounce: one commit covers a burst of finishes

    async def _commit_now(self, only: set[TopicPartition] | None = None) -> None:
        assert self._consumer is not None
        offsets = self.offsets.to_commit()
        if only is not None:
            offsets = {tp: o for tp, o in offsets.items() if tp in only}
        assigned = self._consumer.assignment()
        offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("worker.commit_failed", error=repr(exc), offsets={tp.partition: o for tp, o in offsets.items()})

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
                batch = await consumer.getmany(timeout_ms=50)
                for records in batch.values():
                    for rec in records:
                        self._on_control(rec)
        finally:
            await consumer.stop()

    def _on_control(self, rec: ConsumerRecord[Any, Any]) -> None:
        try:
            msg = self.codec.decode_control(rec.value or b"", content_type_from_headers(rec.headers))
        except DecodeFailure as exc:
            log.warning("worker.bad_control", code=exc.code.value, reason=exc.message[:200], offset=rec.offset)
            return
        if isinstance(msg, Cancel):
            runs = self.by_request.get(msg.id, set())
            for run_id in runs:
                self.engine.abort_request(run_id, FinishKind.CANCELLED)
            self._wake.set()
            log.info("worker.cancel", request_id=msg.id[:200], held=bool(runs))

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
            st = WorkerStatus(
                worker_id=self.worker_id,
                model=self.model.name,
                ts_ms=int(time.time() * 1000),
                running=s.running,
                waiting=s.waiting,
                capacity=self.model.max_inflight,
                state="paused" if self.paused else "serving",
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
            try:
                await self._producer.send(self.topics.status, self.codec.encode(st), key=self.worker_id.encode())
                beat(self.settings.health_file, ready=True, worker=self.worker_id, state=st.state)
            except KafkaError as exc:
                log.warning("worker.status_failed", error=repr(exc))
                beat(self.settings.health_file, ready=False, worker=self.worker_id, error=repr(exc)[:200])
            await asyncio.sleep(self.settings.latency.status_interval_ms / 1000)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(50):
        await consumer.topics()  # refreshes cluster metadata
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        await asyncio.sleep(0.1)
    raise KafkaError(f"topic {topic} has no partitions (does it exist?)")


def _header_ms(raw: bytes | None, fallback: int) -> int:
    try:
        return int(raw) if raw else fallback
    except ValueError:
        return fallback
