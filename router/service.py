"""The router's Kafka loop: consume `llm.requests` in group `llm-router`,
decide, publish, and commit only after every publish of the batch is acknowledged."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from contracts.codec import Codec, ContentType, DecodeFailure
from contracts.messages import Error, ErrorCode
from contracts.topics import Headers
from contracts.validation import is_topic_name
from fleet.health import beat
from fleet.kafka import ProducerPurpose, group_progress, make_consumer, make_producer, with_retry
from fleet.runtime import log_task_failure
from fleet.settings import Settings
from router.decide import Decider, Duplicate, Forward, Reject
from router.dedup import DedupWindow
from router.load import LoadTracker

log = structlog.get_logger(__name__)


def _ms() -> int:
    return int(time.time() * 1000)


class RouterService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = settings.kafka.topics
        self.codec = Codec()
        self.decider = Decider(settings, self.codec)
        self.dedup = DedupWindow(settings.router.dedup_window_s, settings.router.dedup_max_entries)
        self.load = LoadTracker(settings.router.overload_max_backlog)
        self.counts: dict[str, int] = {"forwarded": 0, "rejected": 0, "duplicates": 0, "overloaded": 0}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self._producer = make_producer(self.settings, purpose=ProducerPurpose.REQUESTS)
        self._consumer = make_consumer(self.settings, self.topics.requests, group_id=self.topics.router_group)
        await with_retry("router.producer.start", self._producer.start, stop=stop)
        await with_retry("router.consumer.start", self._consumer.start, stop=stop)
        log.info("router.started", intake=self.topics.requests, group=self.topics.router_group)
        load_task = asyncio.create_task(self._poll_load(stop), name="load")
        load_task.add_done_callback(log_task_failure)
        try:
            while not stop.is_set():
                try:
                    batch = await self._consumer.getmany(timeout_ms=100, max_records=500)
                    for tp, records in batch.items():
                        await self._handle_partition(tp, records)
                except KafkaError as exc:
                    log.warning("router.kafka_error", error=repr(exc))
                    await asyncio.sleep(0.5)
        finally:
            load_task.cancel()
            await asyncio.gather(load_task, return_exceptions=True)
            await self._consumer.stop()
            await self._producer.stop()
            log.info("router.stopped", **self.counts)

    async def _handle_partition(self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]) -> None:
        assert self._consumer is not None
        now_ms = _ms()
        pending: list[asyncio.Future[Any]] = []
        forwarded: list[str] = []
        for rec in records:
            with structlog.contextvars.bound_contextvars(partition=tp.partition, offset=rec.offset):
                pending.extend(await self._handle(rec, now_ms, forwarded))
        try:
            await asyncio.gather(*pending)
        except KafkaError as exc:
            # nothing is committed: rewind so the whole batch is tried again (at-least-once)
            log.warning("router.publish_failed", error=repr(exc), first_offset=records[0].offset)
            self._consumer.seek(tp, records[0].offset)
            await asyncio.sleep(0.5)
            return
        for rid in forwarded:
            self.dedup.record(rid, now_ms / 1000)
        await with_retry("router.commit", lambda: self._consumer.commit({tp: records[-1].offset + 1}))  # type: ignore[union-attr]

    async def _handle(
        self, rec: ConsumerRecord[Any, Any], now_ms: int, forwarded: list[str]
    ) -> list[asyncio.Future[Any]]:
        assert self._producer is not None
        headers = list(rec.headers or ())
        decision = self.decider.decide(rec.value, headers, rec.timestamp, now_ms)
        if isinstance(decision, Forward) and self.dedup.seen(decision.request.id, now_ms / 1000):
            decision = Duplicate(decision.request.id)
        if isinstance(decision, Duplicate) or (isinstance(decision, Forward) and decision.request.id in forwarded):
            self.counts["duplicates"] += 1
            log.info("router.duplicate", request_id=getattr(decision, "request_id", None) or rec.key)
            return []
        if isinstance(decision, Forward):
            req = decision.request
            reason = self.load.refusal(decision.model, req.deadline_ms, now_ms)
            if reason is not None:
                self.counts["overloaded"] += 1
                return await self.reject(
                    Reject(ErrorCode.OVERLOADED, reason, req.id, req.reply_to, False, decision.content_type.value), rec
                )
            ct = decision.content_type
            out_headers = [
                (Headers.CONTENT_TYPE, ct.value.encode()),
                (Headers.INTAKE_MS, str(rec.timestamp).encode()),
            ]
            if decision.tier:
                out_headers.append((Headers.TIER, decision.tier.encode()))
            value = self.codec.encode(req, ct)
            fut = await self._producer.send(
                self.topics.model(decision.model), value, key=req.id.encode(), headers=out_headers
            )
            forwarded.append(req.id)
            self.load.forwarded(decision.model)
            self.counts["forwarded"] += 1
            log.debug(
                "router.forward", request_id=req.id, model=decision.model, tier=decision.tier, score=decision.score
            )
            return [fut]
        assert isinstance(decision, Reject)
        self.counts["rejected"] += 1
        return await self.reject(decision, rec)

    async def reject(self, d: Reject, rec: ConsumerRecord[Any, Any]) -> list[asyncio.Future[Any]]:
        """An error event where the sender can be addressed, and a DLQ copy for bad input."""
        assert self._producer is not None
        futs: list[asyncio.Future[Any]] = []
        log.info("router.reject", request_id=d.request_id, code=d.code.value, reason=d.message[:200], dlq=d.to_dlq)
        if d.request_id and d.reply_to and is_topic_name(d.reply_to):
            ct = ContentType(d.content_type)
            event = Error(id=d.request_id[:200], code=d.code, message=d.message, retriable=d.code.retriable)
            try:
                futs.append(
                    await self._producer.send(
                        d.reply_to,
                        self.codec.encode(event, ct),
                        key=d.request_id[:200].encode(),
                        headers=[(Headers.CONTENT_TYPE, ct.value.encode())],
                    )
                )
            except KafkaError as exc:
                log.warning("router.reply_failed", reply_to=d.reply_to, error=repr(exc))
        if d.to_dlq:
            futs.append(await self.to_dlq(rec, d.code.value, d.message))
        return futs

    async def to_dlq(self, rec: ConsumerRecord[Any, Any], code: str, reason: str) -> asyncio.Future[Any]:
        assert self._producer is not None
        headers = [(k, v) for k, v in (rec.headers or ()) if not k.startswith("fleet-error")]
        headers += [
            (Headers.ERROR_CODE, code.encode()),
            (Headers.ERROR_REASON, reason[:1000].encode("utf-8", "replace")),
            (Headers.SOURCE_TOPIC, rec.topic.encode()),
            (Headers.SOURCE_PARTITION, str(rec.partition).encode()),
            (Headers.SOURCE_OFFSET, str(rec.offset).encode()),
        ]
        fut: asyncio.Future[Any] = await self._producer.send(
            self.topics.dlq, rec.value or b"", key=rec.key, headers=headers
        )
        return fut

    async def _poll_load(self, stop: asyncio.Event, interval_s: float = 0.5) -> None:
        """Track each model topic's backlog (end offsets minus the worker group's commits)."""
        from aiokafka.admin import AIOKafkaAdminClient

        from fleet.kafka import connection_kwargs

        admin = AIOKafkaAdminClient(**connection_kwargs(self.settings))
        ends = make_consumer(self.settings, group_id=None)
        status = make_consumer(
            self.settings,
            self.topics.status,
            group_id=None,
            fetch_max_wait_ms=self.settings.latency.background_fetch_max_wait_ms,
        )
        await with_retry("router.admin.start", admin.start, stop=stop)
        await with_retry("router.ends.start", ends.start, stop=stop)
        await with_retry("router.status.start", status.start, stop=stop)
        workers: dict[str, tuple[str, int, int]] = {}  # worker id -> (model, capacity, ts_ms)
        try:
            while not stop.is_set():
                for records in (await status.getmany(timeout_ms=0)).values():
                    for r in records:
                        try:
                            st = self.codec.decode_status(r.value or b"")
                        except DecodeFailure as exc:
                            log.warning("router.bad_status", reason=exc.message[:200], offset=r.offset)
                            continue
                        workers[st.worker_id] = (st.model, st.capacity, st.ts_ms)
                fresh_ms = _ms() - 3 * self.settings.latency.status_interval_ms - 1000
                for m in self.settings.models:
                    topic = self.topics.model(m.name)
                    try:
                        known = ends.partitions_for_topic(topic) or range(self.settings.kafka.model_partitions)
                        progress = await group_progress(ends, admin, topic, known, self.topics.worker_group(m.name))
                        cap = sum(c for model, c, ts in workers.values() if model == m.name and ts >= fresh_ms)
                        end, done = sum(e for e, _ in progress), sum(c for _, c in progress)
                        self.load.update(m.name, end, done, time.monotonic(), cap)
                        log.debug(
                            "router.load",
                            model=m.name,
                            backlog=self.load.models[m.name].backlog,
                            drain_per_s=round(self.load.models[m.name].drain_per_s, 2),
                        )
                    except KafkaError as exc:
                        log.debug("router.load_poll_failed", model=m.name, error=repr(exc))
                beat(self.settings.health_file, ready=True, **self.counts)
                await asyncio.sleep(interval_s)
        finally:
            await status.stop()
            await ends.stop()
            await admin.close()
