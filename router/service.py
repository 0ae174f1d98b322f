"""The router: consume `llm.requests` (and each tenant's own intake topic) in group `llm-router`, decide, carry the
verdicts out, and commit a partition only as far as every record before the point reached its outcome.

This module only wires the parts and supervises their tasks; each job is one module:

    router/pipeline.py   the stages in order (router/stages/), pure: one record in, one outcome out
    router/sends.py      an outcome into the records that carry it out (forward, refusal, DLQ copy, move)
    router/intake.py     one partition's batch: decide, deliver, note in the ledger, commit or redo
    router/delivery.py   the sends on the producer; what fails is followed up (router/follow_up.py, pure)
    router/ledger.py     where each record of a partition stands, and how far it may be committed (pure)
    router/pacer.py      paced batch requests, released as their tenant's rate admits
    router/views.py      the state the stages read, and the registry that starts each view's feed
    router/accounts/     tenant accounts: the policy, the view, the store that loads and snapshots them

Outcomes of a record: forwarded (the model topic acknowledged it), refused (an error event on its `reply_to`
where one may be written, and a DLQ copy for bad input), answered, moved to the router owning its tenant's
counters, a duplicate, held for its tenant's rate, or undeliverable (a refusal that could not be written: a DLQ
copy records it). Nothing a record holds can raise out of the loop (the pipeline turns any exception into a
refusal), and every long-lived task is supervised: if a view's feed dies, the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from contracts.codec import Codec
from fleet.fetch import Fetch
from fleet.health import beat
from fleet.kafka import ProducerPurpose, make_consumer, make_producer, with_retry
from fleet.runtime import log_task_failure
from fleet.settings import Settings
from router.delivery import Delivery
from router.intake import Intake
from router.pipeline import Pipeline, build_pipeline
from router.sends import RouterStats, Sends
from router.views import Views

log = structlog.get_logger(__name__)


def _ms() -> int:
    return int(time.time() * 1000)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        store = self._intake.store
        for tp in revoked:
            self._intake.forget(tp)
            tenant = store.owned_partition(tp)
            if tenant is not None:
                await store.hand_over(tenant.name)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("router.assigned", partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))
        await self._intake.take_over(assigned)


class RouterService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = settings.kafka.topics
        codec = Codec()
        self.views = Views(settings, _ms())
        self.pipeline = Pipeline(build_pipeline(settings, self.views, codec), codec)
        self.stats = RouterStats()
        self.sends = Sends(settings, self.pipeline, codec, self.stats)
        self.delivery = Delivery(settings, self.sends, self.views, self.stats, codec)
        self.intake = Intake(settings, self.sends, self.delivery, self.views, self.stats, asyncio.Event())
        self.store = self.views.accounts.store
        self._last_beat = 0.0

    @property
    def counts(self) -> dict[str, Any]:
        return {**asdict(self.stats), **self.store.counts}

    def attach(self, producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        """The Kafka clients the loop sends, commits and seeks with."""
        self.delivery.producer = producer
        self.intake.consumer = consumer
        self.intake.stop = stop

    async def run(self, stop: asyncio.Event) -> None:
        r = self.settings.router
        producer = make_producer(self.settings, purpose=ProducerPurpose.REQUESTS)
        extra: dict[str, Any] = {"group_instance_id": r.group_instance_id} if r.group_instance_id else {}
        consumer = make_consumer(self.settings, group_id=self.topics.router_group, **extra)
        self.attach(producer, consumer, stop)
        # the shared intake, and each tenant's own (the topic names the tenant: fleet_topics creates them)
        intake = [self.topics.requests, *(self.topics.tenant_intake(t.name) for t in self.settings.tenants)]
        consumer.subscribe(intake, listener=_Rebalance(self.intake))
        fetch = Fetch(consumer, self.settings, name="router.intake", on_undecodable=self.intake.undecodable)
        self._warn_at_start()
        await with_retry("router.producer.start", producer.start, stop=stop)
        await self.store.start(producer, stop)  # before the group join: assignments load accounts
        await with_retry("router.consumer.start", consumer.start, stop=stop)
        log.info(
            "router.started",
            intake=intake,
            group=self.topics.router_group,
            group_instance_id=r.group_instance_id,
            tenants=[t.name for t in self.settings.tenants],
            views=[v.name for v in self.views.all],
        )
        tasks = [asyncio.create_task(feed(stop), name=name) for name, feed in self.views.feeds.items()]
        for task in tasks:
            task.add_done_callback(log_task_failure)
        try:
            while not stop.is_set():
                for task in tasks:
                    if task.done():  # supervised: a dead feed ends the process (non-zero), never a stale view
                        raise RuntimeError(f"router task {task.get_name()!r} ended") from (
                            None if task.cancelled() else task.exception()
                        )
                try:
                    batch = await fetch.getmany(timeout_ms=100, max_records=500)
                except KafkaError as exc:
                    log.warning("router.kafka_error", error=repr(exc))
                    await self.intake.pause(0.5)
                    continue
                for tp, records in batch.items():
                    if stop.is_set():
                        break  # uncommitted: the partition's next owner (or this router's restart) redoes them
                    await self.intake.handle(tp, records, _ms())
                await self.intake.commit_skipped()
                if self.intake.ledger.holding:
                    await self.intake.release_held(_ms())
                self._beat()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await fetch.stop()
            await consumer.stop()
            await self.store.stop()
            await producer.stop()
            beat(self.settings.health_file, ready=False, **self.counts)
            log.info("router.stopped", **self.counts)

    def _warn_at_start(self) -> None:
        s = self.settings
        if s.limits.max_request_bytes + 4096 > s.kafka.max_request_bytes:
            log.warning(
                "router.limits_exceed_record_size",
                max_request_bytes=s.limits.max_request_bytes,
                producer_max_request_bytes=s.kafka.max_request_bytes,
            )
        if s.tenants and s.kafka.record_key is None:
            log.warning(
                "router.records_not_signed",
                note="tenants are configured but no kafka.record_key (FLEET_RECORD_KEY): anyone who can write a model "
                "topic skips authentication, limits and budgets, and a forged usage record can settle a reservation. "
                "Set one secret for the router and every worker, or make sure Kafka ACLs close those topics",
            )
        if not s.tenants:
            log.warning(
                "router.default_tenant",
                note="no [[tenants]] configured: one default tenant, no API keys checked, the body's `tenant` is "
                "passed on unchecked",
            )

    def _beat(self) -> None:
        """Health is the consume loop's progress: a loop that stops turning stops beating."""
        now = time.monotonic()
        if now - self._last_beat >= self.settings.router.health_interval_ms / 1000:
            self._last_beat = now
            health = self.views.health
            live = {m: b.live_workers for m, b in health.breakers.items()}  # for the supervisor's readiness
            beat(self.settings.health_file, ready=True, **self.counts, health=health.summary(_ms()), live=live)
