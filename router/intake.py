"""One intake partition's batch, from fetch to commit: decide each record (router/sends.py runs the pipeline),
carry the decisions out (router/delivery.py), note where each record stands (router/ledger.py) and commit the
partition as far as every record before the point reached its outcome.

A send that fails retriably leaves its record, and every record after it, for a redo: the partition is committed
up to it, sought back and tried again; records that already reached their outcome are not redone, and a record
whose outcome was partly written (its DLQ copy acknowledged, its error reply not) is not decided again: the redo
sends only what is still missing, so each part of an outcome is written once. Paced batch requests wait in
router/pacer.py; the commit stops before the first of them. A tenant's counters are snapshotted before the
commit past the records they reflect (router/accounts/store.py).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from fleet.fetch import Undecodable
from fleet.kafka import COMMIT_FATAL, with_retry
from fleet.settings import Settings
from router.delivery import Delivery
from router.ledger import Ledger
from router.pacer import Pacer
from router.sends import Plan, RouterStats, SendKind, Sends, broker_timestamp_ms
from router.stages.base import Context, Hold
from router.views import Views

log = structlog.get_logger(__name__)


class Intake:
    def __init__(
        self,
        settings: Settings,
        sends: Sends,
        delivery: Delivery,
        views: Views,
        stats: RouterStats,
        stop: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.sends = sends
        self.delivery = delivery
        self.views = views
        self.stats = stats
        self.store = views.accounts.store
        self.ledger: Ledger[TopicPartition] = Ledger()
        self.pacer = Pacer(views.accounts, self.ledger)
        self.consumer: AIOKafkaConsumer | None = None  # set when the router starts
        self.stop = stop

    async def pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            pass

    def forget(self, tp: TopicPartition) -> None:
        """A partition left this router: its new owner starts from the committed offset."""
        self.ledger.forget(tp)

    # -- one partition's batch -----------------------------------------------------------------------------
    async def handle(self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]], now_ms: int) -> None:
        assert self.consumer is not None
        owner = self.store.owned_partition(tp)
        if owner is not None and self.views.accounts.get(owner.name) is None:
            # counters not loaded: take_over pauses the partition until they are, so only a batch fetched before
            # that (or one in hand across a revoke) lands here; it is fetched again, never decided without them
            self._seek(tp, records[0].offset)
            await self.pause(0.05)
            return
        part = self.ledger(tp)
        part.fetched(records[-1].offset + 1)
        plans: list[Plan] = []
        self.views.batch()
        with structlog.contextvars.bound_contextvars(partition=tp.partition):
            for rec in records:
                self.stats.consumed += 1
                if part.is_settled(rec.offset):
                    plans.append(Plan(rec, None))
                elif (u := part.unfinished.get(rec.offset)) is not None:
                    # decided in an earlier try: only what was not acknowledged is sent, never a forward twice
                    for m in u.missing:
                        if m.kind is SendKind.FORWARD:
                            self.views.forwarding(m)
                    plans.append(Plan(rec, u.decision, list(u.missing)))
                else:
                    plan = self.sends.plan(rec, now_ms)
                    for s in plan.sends:
                        if s.kind is SendKind.FORWARD:
                            self.views.forwarding(s)
                    plans.append(plan)
        await self.delivery.carry(plans, part, now_ms)
        redo_at: int | None = None
        for p in plans:
            if p.decision is None:
                continue
            if isinstance(p.decision, Hold) and not p.failures:
                if self.pacer.hold(tp, p.rec, p.decision):
                    self.stats.held += 1
                else:  # no account to hold it on (it left this router meanwhile): decided again
                    redo_at = p.rec.offset if redo_at is None else redo_at
                continue
            if p.failures:
                redo_at = p.rec.offset if redo_at is None else redo_at
                part.partly(p.rec.offset, p.decision, [f[0] for f in p.failures])
            else:
                part.reached(p.rec.offset)
        if redo_at is None:
            await self.commit(tp, part.commit_point(records[-1].offset + 1))
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
            await self.commit(tp, part.commit_point(redo_at))
        self._seek(tp, redo_at)
        await self.pause(0.5)

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        assert self.consumer is not None
        try:
            self.consumer.seek(tp, offset)
        except IllegalStateError:  # revoked meanwhile: its new owner starts from the committed offset
            self.forget(tp)

    # -- undecodable batches ---------------------------------------------------------------------------------
    async def undecodable(self, bad: Undecodable) -> None:
        """An intake batch nothing can decode: its raw bytes to the DLQ (acknowledged before the consumer steps
        past it; a failure raises and leaves it for the next fetch), committed past once the records before it
        reached their outcomes."""
        producer = self.delivery.producer
        assert producer is not None
        value, key, headers = bad.dlq(self.settings.kafka.max_request_bytes)
        await producer.send_and_wait(self.settings.kafka.topics.dlq, value, key=key, headers=headers)
        self.stats.undecodable += 1
        self.stats.dlq += 1
        part = self.ledger(TopicPartition(bad.topic, bad.partition))
        part.skipped_to = max(part.skipped_to, bad.next_offset)

    async def commit_skipped(self) -> None:
        """Commit past undecodable batches that are the last thing met on their partition (records after one
        commit past it themselves), unless the partition was sought back for a redo meanwhile."""
        assert self.consumer is not None
        for tp, part in list(self.ledger.parts.items()):
            end, part.skipped_to = part.skipped_to, 0
            if not end or end < part.fetched_end or part.unfinished:
                continue
            try:
                if await self.consumer.position(tp) < end:
                    continue  # a redo sought back before it: it is met again and committed past then
            except IllegalStateError:
                continue  # revoked: its new owner starts from the committed offset
            part.fetched(end)
            await self.commit(tp, part.commit_point(end))

    # -- paced batch requests ------------------------------------------------------------------------------
    async def release_held(self, now_ms: int) -> None:
        """Release what the pacer says each tenant's rate admits. A released request runs the pipeline again (its
        rate taken already) and reaches its outcome: forwarded, or refused if its deadline passed meanwhile."""
        due = self.pacer.due(now_ms)
        by_tp: dict[TopicPartition, list[tuple[Any, Plan]]] = {}
        for r in due:
            rec = r.rec
            ctx = Context(
                rec.value,
                list(rec.headers or ()),
                broker_timestamp_ms(rec),
                now_ms,
                topic=r.tp.topic,
                partition=r.tp.partition,
                paced=True,
            )
            plan = self.sends.plan(rec, now_ms, ctx)
            for s in plan.sends:
                if s.kind is SendKind.FORWARD:
                    self.views.forwarding(s)
            by_tp.setdefault(r.tp, []).append((r, plan))
        for tp, pairs in by_tp.items():
            part = self.ledger.get(tp)
            if part is None:  # the partition left this router meanwhile
                continue
            await self.delivery.carry([p for _, p in pairs], part, now_ms)  # what fails for good becomes a refusal
            self.pacer.again([r for r, p in pairs if p.failures])
            for r, p in pairs:
                if not p.failures:
                    self.pacer.done(r)
            if part.fetched_end:
                await self.commit(tp, part.commit_point(part.fetched_end))

    # -- assignment and commit -------------------------------------------------------------------------------
    async def take_over(self, assigned: list[TopicPartition]) -> None:
        """Assigned partitions that own a tenant's counters: load them, and start past what they reflect."""
        assert self.consumer is not None
        consumer = self.consumer
        owned = [(tp, t) for tp in assigned if (t := self.store.owned_partition(tp)) is not None]
        if owned:  # nothing of them is fetched until their counters are loaded and the position set
            consumer.pause(*(tp for tp, _ in owned))
        for tp, tenant in owned:
            committed = await with_retry("router.committed", partial(consumer.committed, tp), stop=self.stop)
            start = await self.store.take_over(tenant, committed, self.stop)
            if start > (committed or 0):
                consumer.seek(tp, start)
            consumer.resume(tp)

    async def commit(self, tp: TopicPartition, offset: int) -> None:
        assert self.consumer is not None
        consumer = self.consumer
        tenant = self.store.owned_partition(tp)
        account = self.views.accounts.get(tenant.name) if tenant is not None else None
        if account is not None:  # the counters first: a commit past records they do not reflect would lose them
            try:
                await self.store.save(account, offset)
            except KafkaError as exc:
                log.warning("router.tenant_state_not_saved", tenant=account.settings.name, error=repr(exc))
                return  # uncommitted: the next batch's snapshot and commit cover these records too
        try:
            await with_retry("router.commit", lambda: consumer.commit({tp: offset}), stop=self.stop, fatal=COMMIT_FATAL)
        except COMMIT_FATAL as exc:
            # the group moved on between fetch and commit: these outcomes were reached, the new owner of the
            # partition redoes them from the committed offset (duplicates are dropped by id downstream)
            self.stats.commits_dropped += 1
            log.warning("router.commit_dropped", partition=tp.partition, offset=offset, error=repr(exc))
            self.forget(tp)
            return
        except KafkaError:
            if self.stop.is_set():
                return  # stopping: left uncommitted, redone after the restart
            raise
        part = self.ledger.get(tp)
        if part is not None:
            self.stats.committed += part.committed(offset)
