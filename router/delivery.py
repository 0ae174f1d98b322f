"""Carrying plans out on the producer (router/sends.py builds them), and the follow-up of what fails.

Sends start one after another in record order (as a bare relay does: one task per send made every send race for
the accumulator's batch, and each full batch woke them all to retry), then all are awaited. What failed is
decided by router/follow_up.py (pure): a retry (left on the plan: the caller redoes the record), a refusal or an
undeliverable copy (new sends, carried out in a second round) or a lost DLQ copy (logged). The views hear of
every acknowledged forward, and each record is counted once, when it reached its outcome (RouterStats.reached).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from contracts.codec import Codec, ContentType
from fleet.settings import Settings
from router.follow_up import Lost, Refuse, Retry, Undeliverable, follow_up
from router.ledger import PartitionLedger
from router.sends import Plan, RouterStats, SendKind, Sends
from router.views import Views

log = structlog.get_logger(__name__)


class Delivery:
    def __init__(self, settings: Settings, sends: Sends, views: Views, stats: RouterStats, codec: Codec) -> None:
        self.settings = settings
        self.sends = sends
        self.views = views
        self.stats = stats
        self.codec = codec
        self.producer: AIOKafkaProducer | None = None  # set when the router starts

    async def carry(self, plans: list[Plan], part: PartitionLedger, now_ms: int) -> None:
        """Carry the plans out, then a second round for what failed for good. A plan left with failures is for
        the caller to redo; every other plan reached its outcome and is counted."""
        ok = await self._carry_out(plans, now_ms)
        if any(p.failures for p in plans):
            reachable = ok > 0 or await self._broker_reachable()
            follow = [p for p in plans if p.failures and self._follow_up(p, part, reachable)]
            if follow:
                await self._carry_out(follow, now_ms)
        for p in plans:
            if not p.failures:
                self.stats.reached(p.decision)

    async def _broker_reachable(self) -> bool:
        assert self.producer is not None
        try:
            return bool(await asyncio.wait_for(self.producer.client.force_metadata_update(), 5.0))
        except (TimeoutError, KafkaError, OSError):
            return False

    def _follow_up(self, p: Plan, part: PartitionLedger, reachable: bool) -> bool:
        """Turn the plan's failures into their follow-ups; True when there are new sends to carry out."""
        keep, follow = [], []
        r = self.settings.router

        def salvage() -> dict[str, Any]:
            return self.codec.salvage(p.rec.value or b"", ContentType.JSON) if p.rec.value else {}

        for send, exc in p.failures:
            attempts = part.attempts.get(p.rec.offset, 0)
            then = follow_up(
                send,
                exc,
                p.decision,
                reachable=reachable,
                attempts=attempts,
                max_attempts=r.reply_max_attempts,
                salvage=salvage,
            )
            if isinstance(then, Retry):
                if then.attempted:
                    part.attempt(p.rec.offset)
                keep.append((send, exc))
            elif isinstance(then, Refuse):
                p.decision = then.reject  # counted as the refusal it became
                follow += self.sends.reject_sends(then.reject, p.rec)
            elif isinstance(then, Undeliverable):
                part.attempt(p.rec.offset)
                if then.gone:
                    now = time.monotonic()
                    # expired entries go when a new one comes: the map holds at most one TTL's worth of names
                    self.sends.bad_topics = {t: until for t, until in self.sends.bad_topics.items() if until > now}
                    self.sends.bad_topics[then.topic] = now + r.bad_topic_ttl_s
                follow.append(self.sends.undeliverable(p.rec, then.topic, then.why))
            elif isinstance(then, Lost):
                self.stats.undeliverable += 1  # nowhere left to write it: the log line is its record
                event = "router.dlq_failed" if send.kind is SendKind.DLQ else "router.cancel_failed"
                log.error(event, topic=send.topic, error=then.why, offset=p.rec.offset)
        p.failures = keep
        p.sends = follow
        return bool(follow)

    async def _carry_out(self, plans: list[Plan], now_ms: int) -> int:
        """Start every send (in record order), then wait for all; failures are noted on their plan. Returns how
        many sends succeeded."""
        assert self.producer is not None
        producer = self.producer
        started: list[tuple[Plan, Any, asyncio.Future[Any]]] = []
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
                continue
            ok += 1
            if s.kind is SendKind.FORWARD:
                self.views.forwarded(s, now_ms)  # a redo must not forward it again
            elif s.kind is SendKind.DLQ:
                self.stats.dlq += 1
        return ok
