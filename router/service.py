"""The router's Kafka loop: consume `llm.requests` in group `llm-router`, decide, carry out the verdicts,
and commit a partition's batch only when every record in it has reached its outcome.

Outcomes of a record: forwarded (the model topic acknowledged it), refused (an error event on its
`reply_to` where one can be addressed, and a DLQ copy for bad input), duplicate, or undeliverable (its
refusal could not be written to `reply_to`: recorded as a DLQ copy with `fleet-error-code: undeliverable`).
A send that fails retriably leaves its record, and every record after it, for a redo: the loop commits
what came before, seeks back and tries again; records that already reached their outcome are not redone,
and a record whose outcome was partly written (its DLQ copy acknowledged, its error reply not) is not
decided again: the redo sends only what is still missing, so each part of an outcome is written once.
Nothing a record holds can raise out of the loop (the decider turns any exception into a refusal), and
every long-lived task is supervised: if the load task dies, the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from functools import partial
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    IllegalStateError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnknownTopicOrPartitionError,
)

from contracts.codec import Codec, ContentType
from contracts.messages import ErrorCode
from fleet.fetch import Fetch, Undecodable
from fleet.health import beat
from fleet.kafka import (
    COMMIT_FATAL,
    ProducerPurpose,
    is_retriable,
    make_consumer,
    make_producer,
    with_retry,
)
from fleet.runtime import log_task_failure
from fleet.settings import Settings
from router.feeds import feed_health, feed_load
from router.pipeline import Pipeline, build_pipeline
from router.policies.accounts import Held
from router.sends import Plan, RouterStats, Send, SendKind, Sends, broker_timestamp_ms
from router.stages.base import Context, Forward, Hold, Outcome, Reject
from router.tenant_store import TenantStore
from router.views import Views

log = structlog.get_logger(__name__)


def _ms() -> int:
    return int(time.time() * 1000)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: RouterService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self._service.forget(tp)
            tenant = self._service.store.owned_partition(tp)
            if tenant is not None:
                await self._service.store.hand_over(tenant.name)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("router.assigned", partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))
        await self._service.take_over(assigned)


class RouterService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = settings.kafka.topics
        self.codec = Codec()
        self.views = Views.from_settings(settings, _ms())
        self.pipeline = Pipeline(build_pipeline(settings, self.views, self.codec), self.codec)
        self.stats = RouterStats()
        self.sends = Sends(settings, self.pipeline, self.codec, self.views, self.stats)
        self.store = TenantStore(settings, self.views.accounts)
        self._held: dict[TopicPartition, dict[int, ConsumerRecord[Any, Any]]] = {}  # paced batch records, by offset
        self._fetched_end: dict[TopicPartition, int] = {}  # per partition: past the last record fetched
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._fetch: Fetch | None = None
        self._skipped: dict[TopicPartition, int] = {}  # past undecodable batches met in this fetch
        self._stop = asyncio.Event()
        # per partition: offsets past the committed one that already reached their outcome (a redo skips them)
        self._completed: dict[TopicPartition, set[int]] = {}
        # per partition: offset -> (decision, sends still to be acknowledged) of records partly carried out
        self._unfinished: dict[TopicPartition, dict[int, tuple[Outcome | None, list[Send]]]] = {}
        self._reply_attempts: dict[tuple[TopicPartition, int], int] = {}
        self._last_beat = 0.0

    @property
    def counts(self) -> dict[str, Any]:
        return {**asdict(self.stats), **self.store.counts}

    def forget(self, tp: TopicPartition) -> None:
        """A partition left this router: its new owner starts from the committed offset."""
        self._completed.pop(tp, None)
        self._unfinished.pop(tp, None)
        self._held.pop(tp, None)
        self._fetched_end.pop(tp, None)
        self._skipped.pop(tp, None)
        for key in [k for k in self._reply_attempts if k[0] == tp]:
            del self._reply_attempts[key]

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        r = self.settings.router
        self._producer = make_producer(self.settings, purpose=ProducerPurpose.REQUESTS)
        extra: dict[str, Any] = {"group_instance_id": r.group_instance_id} if r.group_instance_id else {}
        self._consumer = make_consumer(self.settings, group_id=self.topics.router_group, **extra)
        # the shared intake, and each tenant's own (the topic names the tenant: fleet_topics creates them)
        intake = [self.topics.requests, *(self.topics.tenant_intake(t.name) for t in self.settings.tenants)]
        self._consumer.subscribe(intake, listener=_Rebalance(self))
        fetch = self._fetch = Fetch(
            self._consumer, self.settings, name="router.intake", on_undecodable=self._undecodable
        )
        if self.settings.limits.max_request_bytes + 4096 > self.settings.kafka.max_request_bytes:
            log.warning(
                "router.limits_exceed_record_size",
                max_request_bytes=self.settings.limits.max_request_bytes,
                producer_max_request_bytes=self.settings.kafka.max_request_bytes,
            )
        await with_retry("router.producer.start", self._producer.start, stop=stop)
        await self.store.start(self._producer, stop)  # before the group join: assignments load accounts
        await with_retry("router.consumer.start", self._consumer.start, stop=stop)
        log.info(
            "router.started",
            intake=intake,
            group=self.topics.router_group,
            group_instance_id=r.group_instance_id,
            tenants=[t.name for t in self.settings.tenants],
        )
        if self.settings.tenants and self.settings.kafka.record_key is None:
            log.warning(
                "router.records_not_signed",
                note="tenants are configured but no kafka.record_key (FLEET_RECORD_KEY): anyone who can write a model "
                "topic skips authentication, limits and budgets, and a forged usage record can settle a reservation. "
                "Set one secret for the router and every worker, or make sure Kafka ACLs close those topics",
            )
        if not self.settings.tenants:
            log.warning(
                "router.default_tenant",
                note="no [[tenants]] configured: one default tenant, no API keys checked, the body's `tenant` is "
                "passed on unchecked",
            )
        tasks = [
            asyncio.create_task(feed_load(self.settings, self.views.load, stop), name="load"),
            asyncio.create_task(feed_health(self.settings, self.views.health, stop), name="health"),
            asyncio.create_task(self.store.run(stop), name="tenant-accounts"),
        ]
        for task in tasks:
            task.add_done_callback(log_task_failure)
        try:
            while not stop.is_set():
                for task in tasks:
                    if task.done():  # supervised: a dead helper ends the process (non-zero), never a zombie
                        raise RuntimeError(f"router task {task.get_name()!r} ended") from (
                            None if task.cancelled() else task.exception()
                        )
                try:
                    batch = await fetch.getmany(timeout_ms=100, max_records=500)
                except KafkaError as exc:
                    log.warning("router.kafka_error", error=repr(exc))
                    await self._pause(0.5)
                    continue
                for tp, records in batch.items():
                    if stop.is_set():
                        break  # uncommitted: the partition's next owner (or this router's restart) redoes them
                    await self._handle_partition(tp, records)
                await self._commit_skipped()
                if self._held:
                    await self._release_held()
                self._beat()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await fetch.stop()
            await self._consumer.stop()
            await self.store.stop()
            await self._producer.stop()
            beat(self.settings.health_file, ready=False, **self.counts)
            log.info("router.stopped", **self.counts)

    def _beat(self) -> None:
        """Health is the consume loop's progress: a loop that stops turning stops beating."""
        now = time.monotonic()
        if now - self._last_beat >= self.settings.router.health_interval_ms / 1000:
            self._last_beat = now
            beat(self.settings.health_file, ready=True, **self.counts, health=self.views.health.summary(_ms()))

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _undecodable(self, bad: Undecodable) -> None:
        """An intake batch nothing can decode: its raw bytes to the DLQ (acknowledged before the consumer
        steps past it; a failure raises and leaves it for the next fetch), committed past once the records
        before it reached their outcomes."""
        assert self._producer is not None
        value, key, headers = bad.dlq(self.settings.kafka.max_request_bytes)
        await self._producer.send_and_wait(self.topics.dlq, value, key=key, headers=headers)
        self.stats.undecodable += 1
        self.stats.dlq += 1
        tp = TopicPartition(bad.topic, bad.partition)
        self._skipped[tp] = max(self._skipped.get(tp, 0), bad.next_offset)

    async def _commit_skipped(self) -> None:
        """Commit past undecodable batches that are the last thing met on their partition (records after one
        commit past it themselves), unless the partition was sought back for a redo meanwhile."""
        assert self._consumer is not None
        skipped, self._skipped = self._skipped, {}
        for tp, end in skipped.items():
            if end < self._fetched_end.get(tp, 0) or self._unfinished.get(tp):
                continue
            try:
                if await self._consumer.position(tp) < end:
                    continue  # a redo sought back before it: it is met again and committed past then
            except IllegalStateError:
                continue  # revoked: its new owner starts from the committed offset
            self._fetched_end[tp] = end
            await self._commit(tp, self._commit_point(tp, end))

    # -- one partition's batch -----------------------------------------------
    async def _handle_partition(self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]) -> None:
        assert self._consumer is not None
        now_ms = _ms()
        owner = self.store.owned_partition(tp)
        if owner is not None and self.views.accounts.get(owner.name) is None:
            # counters not loaded: take_over pauses the partition until they are, so only a batch fetched before
            # that (or one in hand across a revoke) lands here; it is fetched again, never decided without them
            try:
                self._consumer.seek(tp, records[0].offset)
            except IllegalStateError:  # revoked meanwhile: its new owner starts from the committed offset
                self.forget(tp)
            await self._pause(0.05)
            return
        done = self._completed.setdefault(tp, set())
        unfinished = self._unfinished.setdefault(tp, {})
        held = self._held.get(tp, {})
        self._fetched_end[tp] = records[-1].offset + 1
        plans: list[Plan] = []
        self.views.dedup.begin_batch()
        with structlog.contextvars.bound_contextvars(partition=tp.partition):
            for rec in records:
                self.stats.consumed += 1
                if rec.offset in done or rec.offset in held:
                    plans.append(Plan(rec, None))
                elif rec.offset in unfinished:  # decided in an earlier try: only what was not acknowledged is sent
                    decision, missing = unfinished[rec.offset]
                    for m in missing:  # forwards of an earlier try still unacknowledged: never forwarded twice
                        if m.kind is SendKind.FORWARD and m.request_id:
                            self.views.dedup.forwarding(m.tenant, m.request_id)
                    plans.append(Plan(rec, decision, missing))
                else:
                    plans.append(self.sends.plan(rec, now_ms))
        await self._send(tp, plans)
        redo_at: int | None = None
        for p in plans:
            if isinstance(p.decision, Hold) and not p.failures and not self._hold(tp, p.rec, p.decision):
                redo_at = p.rec.offset if redo_at is None else redo_at  # no account to hold it on: decided again
                continue
            if p.rec.offset in self._held.get(tp, {}):
                continue  # its outcome comes when the pacer releases it
            for s in p.sends:
                if s.kind is SendKind.FORWARD and not any(f[0] is s for f in p.failures):
                    assert s.request_id is not None
                    self.views.dedup.forwarded(s.tenant, s.request_id, now_ms)  # a redo must not forward it again
            if p.failures:
                if redo_at is None:
                    redo_at = p.rec.offset
                unfinished[p.rec.offset] = (p.decision, [f[0] for f in p.failures])
            else:
                done.add(p.rec.offset)
                unfinished.pop(p.rec.offset, None)
        if redo_at is None:
            await self._commit(tp, self._commit_point(tp, records[-1].offset + 1))
            return
        self.stats.redone += 1
        first = next((f for p in plans for f in p.failures), None)
        log.warning(
            "router.redo",
            partition=tp.partition,
            from_offset=redo_at,
            batch=len(records),
            kind=first[0].kind.value if first else "hold",
            topic=first[0].topic if first else tp.topic,
            error=repr(first[1]) if first else "the tenant's account left this router",
        )
        if redo_at > records[0].offset:
            await self._commit(tp, self._commit_point(tp, redo_at))
        try:
            self._consumer.seek(tp, redo_at)
        except IllegalStateError:  # the partition moved on: its new owner starts from the committed offset
            self.forget(tp)
        await self._pause(0.5)

    def _commit_point(self, tp: TopicPartition, offset: int) -> int:
        """Where a partition may be committed to: `offset`, or before its first held record."""
        held = self._held.get(tp)
        return min(offset, min(held)) if held else offset

    # -- tenant accounts and paced batch work ------------------------------------------------------------
    async def take_over(self, assigned: list[TopicPartition]) -> None:
        """Assigned partitions that own a tenant's counters: load them, and start past what they reflect."""
        assert self._consumer is not None
        consumer = self._consumer
        owned = [(tp, t) for tp in assigned if (t := self.store.owned_partition(tp)) is not None]
        if owned:  # nothing of them is fetched until their counters are loaded and the position set
            consumer.pause(*(tp for tp, _ in owned))
        for tp, tenant in owned:
            committed = await with_retry("router.committed", partial(consumer.committed, tp), stop=self._stop)
            start = await self.store.take_over(tenant, committed, self._stop)
            if start > (committed or 0):
                consumer.seek(tp, start)
            consumer.resume(tp)

    def _hold(self, tp: TopicPartition, rec: ConsumerRecord[Any, Any], h: Hold) -> bool:
        """Hold a paced batch record on its tenant's account; False when the account left this router while
        the batch's sends were in flight (a revoke): the caller leaves the record to be decided again."""
        account = self.views.accounts.get(h.tenant)
        if account is None:
            return False
        self._held.setdefault(tp, {})[rec.offset] = rec
        account.held.append(Held((tp, rec.offset), h.tokens))
        self.stats.held += 1
        return True

    async def _release_held(self) -> None:
        """Release held batch requests, oldest first, as each tenant's rate admits them (interactive requests
        were decided as they came, so they went first). A released request runs the pipeline again (its rate
        taken here) and reaches its outcome: forwarded, or refused if its deadline passed meanwhile."""
        now_ms = _ms()
        plans: dict[TopicPartition, list[Plan]] = {}
        for account in self.views.accounts.accounts.values():
            while account.held:
                h = account.held[0]
                tp, offset = h.key
                rec = self._held.get(tp, {}).get(offset)
                if rec is None:  # its partition left this router
                    account.held.popleft()
                    continue
                if not h.taken:
                    if account.rate_wait(h.tokens, now_ms) is not None:
                        break
                    account.take_rate(h.tokens, now_ms)
                account.held.popleft()
                ctx = Context(
                    rec.value,
                    list(rec.headers or ()),
                    broker_timestamp_ms(rec),
                    now_ms,
                    topic=tp.topic,
                    partition=tp.partition,
                    paced=True,
                )
                plans.setdefault(tp, []).append(self.sends.plan(rec, now_ms, ctx))
        for tp, ps in plans.items():
            await self._send(tp, ps)  # what fails for good becomes a refusal, as for any record
            held = self._held.get(tp, {})
            owner = self.store.owned_partition(tp)
            owning = self.views.accounts.get(owner.name) if owner is not None else None
            for p in reversed(ps):
                if p.failures:  # failed retriably: held again at the front (in order), its rate already taken
                    if owning is not None:
                        owning.held.appendleft(Held((tp, p.rec.offset), 0, taken=True))
                    continue
                held.pop(p.rec.offset, None)
                for s in p.sends:
                    if s.kind is SendKind.FORWARD and s.request_id is not None:
                        self.views.dedup.forwarded(s.tenant, s.request_id, now_ms)
            if not held:
                self._held.pop(tp, None)
            if tp in self._fetched_end:
                await self._commit(tp, self._commit_point(tp, self._fetched_end[tp]))

    async def _send(self, tp: TopicPartition, plans: list[Plan]) -> None:
        """Carry the plans out, then a second round for what failed for good: refusals of unforwardable
        requests, undeliverable replies. A reply's failure counts against it only while the broker answers
        (during a broker pause everything fails, and nothing is given up for that)."""
        ok = await self._carry_out(plans)
        if any(p.failures for p in plans):
            reachable = ok > 0 or await self._broker_reachable()
            follow = [p for p in plans if p.failures and self._follow_up(tp, p, reachable)]
            if follow:
                await self._carry_out(follow)

    async def _broker_reachable(self) -> bool:
        assert self._producer is not None
        try:
            return bool(await asyncio.wait_for(self._producer.client.force_metadata_update(), 5.0))
        except (TimeoutError, KafkaError, OSError):
            return False

    def _follow_up(self, tp: TopicPartition, p: Plan, reachable: bool) -> bool:
        """Turn failures that retrying cannot fix into outcomes (new sends); True when there are any."""
        keep: list[tuple[Send, BaseException]] = []
        follow: list[Send] = []
        for send, exc in p.failures:
            if send.kind is SendKind.MOVE and not is_retriable(exc):
                # the owner's topic is missing or closed to this router: refused here, with the reason
                s = self.codec.salvage(p.rec.value or b"", ContentType.JSON) if p.rec.value else {}
                why = f"the request could not be sent to its tenant's router ({send.topic}): {exc!r}"[:500]
                reject = Reject(ErrorCode.INTERNAL, why, s.get("id"), s.get("reply_to"), to_dlq=True)
                self.stats.moved -= 1
                self.stats.rejected += 1
                follow += self.sends.reject_sends(reject, p.rec)
            elif send.kind is SendKind.FORWARD and not is_retriable(exc):
                too_big = isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError)
                code = ErrorCode.INVALID_REQUEST if too_big else ErrorCode.INTERNAL
                why = "request too large to forward" if too_big else f"forward to {send.topic} failed"
                ct = p.decision.content_type.value if isinstance(p.decision, Forward) else ContentType.JSON.value
                req = p.decision.request if isinstance(p.decision, Forward) else None
                reject = Reject(
                    code,
                    f"{why}: {exc!r}"[:500],
                    send.request_id,
                    req.reply_to if req else None,
                    to_dlq=True,
                    content_type=ct,
                )
                self.stats.forwarded -= 1
                self.stats.rejected += 1
                follow += self.sends.reject_sends(reject, p.rec)
            elif send.kind is SendKind.REPLY and (reachable or not is_retriable(exc)):
                attempts = self._reply_attempts.get((tp, p.rec.offset), 0) + 1
                self._reply_attempts[(tp, p.rec.offset)] = attempts
                # a topic the broker does not know after the producer's full metadata wait is gone for good
                missing = isinstance(exc, UnknownTopicOrPartitionError)
                if is_retriable(exc) and not missing and attempts < self.settings.router.reply_max_attempts:
                    keep.append((send, exc))
                    continue
                if not is_retriable(exc) or missing:
                    now = time.monotonic()
                    # expired entries go when a new one comes: the map holds at most one TTL's worth of names
                    self.sends.bad_topics = {t: until for t, until in self.sends.bad_topics.items() if until > now}
                    self.sends.bad_topics[send.topic] = now + self.settings.router.bad_topic_ttl_s
                follow.append(self.sends.undeliverable(p.rec, send.topic, repr(exc)))
            elif send.kind is SendKind.DLQ and not is_retriable(exc):
                self.stats.undeliverable += 1  # nowhere left to write it: the log line is its record
                log.error("router.dlq_failed", topic=send.topic, error=repr(exc), offset=p.rec.offset)
            else:
                keep.append((send, exc))
        p.failures = keep
        p.sends = follow
        return bool(follow)

    async def _carry_out(self, plans: list[Plan]) -> int:
        """Start every send (in record order), then wait for all; failures are noted on their plan.
        Returns how many sends succeeded."""
        assert self._producer is not None
        producer = self._producer

        # Sends start one after another in record order (as a bare relay does): one task per send made
        # every send race for the accumulator's batch, and each full batch woke them all to retry.
        started: list[tuple[Plan, Send, asyncio.Future[Any]]] = []
        for p in plans:
            for s in p.sends:
                try:
                    fut = await producer.send(s.topic, s.value, key=s.key, headers=s.headers, partition=s.partition)
                    started.append((p, s, fut))
                except Exception as exc:  # any failure of a send is an outcome to handle, never an escape
                    p.failures.append((s, exc))
        if not started:
            return 0
        acks = await asyncio.gather(*(fut for _, _, fut in started), return_exceptions=True)
        ok = 0
        for (p, s, _), ack in zip(started, acks, strict=True):
            if isinstance(ack, BaseException):
                p.failures.append((s, ack))
            else:
                ok += 1
        return ok

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        tenant = self.store.owned_partition(tp)
        account = self.views.accounts.get(tenant.name) if tenant is not None else None
        if account is not None:  # the counters first: a commit past records they do not reflect would lose them
            try:
                await self.store.save(account, offset)
            except KafkaError as exc:
                log.warning("router.tenant_state_not_saved", tenant=account.settings.name, error=repr(exc))
                return  # uncommitted: the next batch's snapshot and commit cover these records too
        try:
            await with_retry(
                "router.commit", lambda: consumer.commit({tp: offset}), stop=self._stop, fatal=COMMIT_FATAL
            )
        except COMMIT_FATAL as exc:
            # the group moved on between fetch and commit: these outcomes were reached, the new owner of
            # the partition redoes them from the committed offset (duplicates are dropped by id downstream)
            self.stats.commits_dropped += 1
            log.warning("router.commit_dropped", partition=tp.partition, offset=offset, error=repr(exc))
            self.forget(tp)
            return
        except KafkaError:
            if self._stop.is_set():
                return  # stopping: left uncommitted, redone after the restart
            raise
        done = self._completed.get(tp)
        if done:
            self.stats.committed += sum(1 for o in done if o < offset)
            done.difference_update([o for o in done if o < offset])
        for key in [k for k in self._reply_attempts if k[0] == tp and k[1] < offset]:
            del self._reply_attempts[key]
        unfinished = self._unfinished.get(tp)
        if unfinished:
            for o in [o for o in unfinished if o < offset]:
                del unfinished[o]
