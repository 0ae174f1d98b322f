"""Kafka client wiring: one place that knows security settings and the
latency knobs of every producer and consumer on the request and reply path."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
)
from aiokafka.helpers import create_ssl_context

from fleet.settings import CompressionType, SecurityProtocol, Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")


class ProducerPurpose(enum.StrEnum):
    REQUESTS = "requests"  # service -> intake, router -> model topic
    REPLIES = "replies"  # worker -> reply_to: token chunks and terminal events
    DLQ = "dlq"
    USAGE = "usage"  # off the hot path: batched


def connection_kwargs(settings: Settings) -> dict[str, Any]:
    k = settings.kafka
    kw: dict[str, Any] = {
        "bootstrap_servers": k.bootstrap,
        "client_id": k.client_id,
        "security_protocol": k.security_protocol.value,
    }
    if k.security_protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL):
        kw["ssl_context"] = create_ssl_context(cafile=k.ssl_cafile, certfile=k.ssl_certfile, keyfile=k.ssl_keyfile)
    if k.sasl_mechanism:
        kw["sasl_mechanism"] = k.sasl_mechanism
        kw["sasl_plain_username"] = k.sasl_username
        kw["sasl_plain_password"] = k.sasl_password
    return kw


def make_producer(settings: Settings, *, purpose: ProducerPurpose) -> AIOKafkaProducer:
    lat = settings.latency
    linger = (
        lat.usage_linger_ms
        if purpose is ProducerPurpose.USAGE
        else (lat.reply_linger_ms if purpose is ProducerPurpose.REPLIES else lat.request_linger_ms)
    )
    return AIOKafkaProducer(
        **connection_kwargs(settings),
        acks="all" if lat.acks == "all" else int(lat.acks),
        linger_ms=linger,
        compression_type=None if lat.compression_type is CompressionType.NONE else lat.compression_type.value,
        # no idempotence: the dev broker does not support it through aiokafka, and at-least-once
        # plus id-based dedup at the client gives the same guarantee to users
        enable_idempotence=False,
        request_timeout_ms=lat.request_timeout_ms,
        retry_backoff_ms=100,
        max_request_size=settings.kafka.max_request_bytes,
    )


def make_consumer(settings: Settings, *topics: str, group_id: str | None = None, **overrides: Any) -> AIOKafkaConsumer:
    lat = settings.latency
    kw: dict[str, Any] = {
        **connection_kwargs(settings),
        "group_id": group_id,
        "enable_auto_commit": False,  # offsets are committed only after the work is done
        "auto_offset_reset": "earliest" if group_id else "latest",
        "fetch_max_wait_ms": lat.fetch_max_wait_ms,
        "fetch_min_bytes": lat.fetch_min_bytes,
        "session_timeout_ms": lat.session_timeout_ms,
        "heartbeat_interval_ms": lat.heartbeat_interval_ms,
        "rebalance_timeout_ms": lat.rebalance_timeout_ms,
        "max_poll_interval_ms": lat.max_poll_interval_ms,
        "retry_backoff_ms": 100,
    }
    kw.update(overrides)
    return AIOKafkaConsumer(*topics, **kw)


def fleet_topics(settings: Settings) -> dict[str, int]:
    """Every topic the fleet itself reads or writes, with its partition count."""
    k = settings.kafka
    t = k.topics
    out = {
        t.requests: k.intake_partitions,
        t.dlq: 1,
        t.control: 1,
        t.status: 1,
        t.usage: 1,
        f"{k.topic_prefix}.replies": k.reply_partitions,
        t.progress: k.model_partitions,  # compacted (topic_configs): workers resume from it
    }
    for m in settings.models:
        out[t.model(m.name)] = k.model_partitions
        out[t.model_batch(m.name)] = k.model_partitions
    for tenant in settings.tenants:  # the router reads these too; producers on them are authenticated by ACLs
        # one partition: its router owns the tenant's counters (router/stages/owner.py)
        out[t.tenant_intake(tenant.name)] = 1
    if any(tenant.limited for tenant in settings.tenants):
        out[t.tenant_state] = 1  # compacted (COMPACTED_TOPICS): the latest snapshot of each tenant's counters
    return out


def topic_configs(settings: Settings, name: str) -> dict[str, str]:
    """Broker configs a fleet topic is created with: the tenant-state snapshots and progress records are
    compacted (the latest per key is all a reader needs); the intake topics are stamped by the broker."""
    t = settings.kafka.topics
    if name in (t.tenant_state, t.progress):
        return {"cleanup.policy": "compact"}
    if name == t.requests or t.tenant_of_intake(name) is not None:
        # the broker's clock stamps intake records, so the time a request waited counts against its deadline
        # without trusting the producer's clock (brokers that ignore it, like the dev broker: from receipt)
        return {"message.timestamp.type": "LogAppendTime"}
    return {}


async def read_to_end(
    settings: Settings, topics: Iterable[str], timeout_s: float = 30.0
) -> list[ConsumerRecord[Any, Any]]:
    """Every record now on `topics` (each partition from its start to its end offset when read), for reports and
    benchmarks that read a topic whole. A topic the broker does not know yet has no records. Raises
    TimeoutError past `timeout_s`."""
    consumer = make_consumer(settings, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # metadata for every topic: partitions_for_topic answers from it
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[ConsumerRecord[Any, Any]] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        from fleet.fetch import Fetch  # it builds on this module

        async with Fetch(consumer, settings, name="read_to_end") as fetch:
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"reading {sorted({tp.topic for tp in tps})} took longer than {timeout_s} s")
                for records in (await fetch.getmany(*tps, timeout_ms=500, max_records=2000)).values():
                    out += records
        return out
    finally:
        await asyncio.shield(consumer.stop())


async def group_progress(
    ends: AIOKafkaConsumer, admin: AIOKafkaAdminClient, topic: str, partitions: Iterable[int], group: str
) -> list[tuple[int, int]]:
    """(end offset, the group's committed offset or 0) for each partition of `topic`: the lag and
    backlog that the router's overload check and `fleet up`'s status line report."""
    parts = [TopicPartition(topic, p) for p in sorted(partitions)]
    end = await ends.end_offsets(parts)
    committed = await admin.list_consumer_group_offsets(group, partitions=parts)
    return [(end[tp], committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0) for tp in parts]


async def ensure_topics(settings: Settings, topics: dict[str, int]) -> list[str]:
    """Create missing topics; returns the names created. Existing topics are left as they are."""
    admin = AIOKafkaAdminClient(**connection_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(name, partitions, settings.kafka.replication_factor, topic_configs=topic_configs(settings, name))
            for name, partitions in topics.items()
            if name not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        return [n.name for n in new]
    finally:
        await admin.close()


# Errors a commit must not retry: the group moved on (a rebalance), so these offsets are no longer ours to
# commit. The caller drops the batch (the partition's new owner redoes it) or, if it still owns the
# partition, redoes it from the committed offset.
COMMIT_FATAL: tuple[type[BaseException], ...] = (CommitFailedError, IllegalStateError)


def is_retriable(exc: BaseException) -> bool:
    """Whether sending again may succeed (router and worker outbox alike). aiokafka marks most errors with
    `retriable`; a full send buffer (KafkaTimeoutError) and a lost connection (KafkaConnectionError, or an
    OSError from the socket) are transient too; anything else is a fact about the record."""
    if isinstance(exc, KafkaTimeoutError | KafkaConnectionError | OSError):
        return True
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


async def with_retry(
    what: str,
    fn: Callable[[], Awaitable[T]],
    *,
    stop: asyncio.Event | None = None,
    max_backoff_s: float = 5.0,
    fatal: tuple[type[BaseException], ...] = (),
) -> T:
    """Call fn until it succeeds, backing off on Kafka errors and logging each failure.

    The fleet never exits because the broker is away: it waits and serves again when it returns.
    Errors in `fatal` are raised at once (e.g. COMMIT_FATAL for commits: retrying them never succeeds).
    When `stop` is set, the next failure (or a backoff in progress) raises that failure instead of retrying.
    """
    backoff = 0.2
    attempt = 0
    while True:
        try:
            return await fn()
        except fatal:
            raise
        except (KafkaError, OSError) as exc:
            attempt += 1
            if stop is not None and stop.is_set():
                raise
            log.warning("kafka.retry", what=what, attempt=attempt, error=repr(exc), backoff_s=round(backoff, 2))
            if stop is None:
                await asyncio.sleep(backoff)
            else:
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                except TimeoutError:
                    pass
                else:
                    raise exc  # stopping: the last failure, as when stop was set before it
            backoff = min(max_backoff_s, backoff * 2)
