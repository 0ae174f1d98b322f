"""The tasks that keep the router's views current from Kafka (supervised by the loop in router/service.py):
each model's load from its topic's end offsets, its worker group's commits and the workers' status reports
(read through fleet/status.py's StatusReader); each model's health (live workers, outcomes, breaker) from the
status, usage and DLQ topics."""

from __future__ import annotations

import asyncio
import time

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from contracts.codec import Codec, ContentType, DecodeFailure, headers_dict
from contracts.topics import Headers
from fleet.fetch import UNDECODABLE, Fetch
from fleet.kafka import group_progress, make_consumer, with_retry
from fleet.record_mac import Kind, record_mac
from fleet.settings import Settings
from fleet.status import RECENT_REPORTS, StatusReader
from router.policies.overload import LoadTracker
from router.views import HealthView

log = structlog.get_logger(__name__)


async def feed_load(settings: Settings, load: LoadTracker, stop: asyncio.Event, interval_s: float = 0.5) -> None:
    """Track each model topic's backlog (end offsets minus the worker group's commits) and its drain rate. Live
    capacity is the health view's (feed_health reads the status topic once for both)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from fleet.kafka import connection_kwargs

    topics = settings.kafka.topics
    admin = AIOKafkaAdminClient(**connection_kwargs(settings))
    ends = make_consumer(settings, group_id=None)
    await with_retry("router.admin.start", admin.start, stop=stop)
    await with_retry("router.ends.start", ends.start, stop=stop)
    try:
        while not stop.is_set():
            for m in settings.models:
                topic = topics.model(m.name)
                try:
                    known = ends.partitions_for_topic(topic) or range(settings.kafka.model_partitions)
                    progress = await group_progress(ends, admin, topic, known, topics.worker_group(m.name))
                    end, done = sum(e for e, _ in progress), sum(c for _, c in progress)
                    load.update(m.name, end, done, time.monotonic())
                    log.debug(
                        "router.load",
                        model=m.name,
                        backlog=load.models[m.name].backlog,
                        drain_per_s=round(load.models[m.name].drain_per_s, 2),
                    )
                except KafkaError as exc:
                    log.debug("router.load_poll_failed", model=m.name, error=repr(exc))
            await asyncio.sleep(interval_s)
    finally:
        await ends.stop()
        await admin.close()


def _dlq_model(settings: Settings, headers: dict[str, str]) -> str | None:
    """The model whose topic a DLQ copy came from (a worker's poison or internal), None for the router's own."""
    source = headers.get(Headers.SOURCE_TOPIC, "")
    for m in settings.model_names:
        t = settings.kafka.topics.model(m)
        if source in (t, f"{t}.batch"):
            return m
    return None


def _tenant(settings: Settings, name: object) -> str:
    """Whose request an outcome was, for the breaker: a configured tenant's name; without tenants one tenant for
    all (the body's `tenant` is unchecked then, and a client naming a new one per request would dodge the
    breaker's rule that one tenant's failures alone cannot open it)."""
    if not settings.tenants or not isinstance(name, str):
        return ""
    return name if settings.tenant(name) is not None else "?"


async def _answers(consumer: AIOKafkaConsumer, timeout_s: float = 2.0) -> bool:
    """Whether the broker answers a metadata request within `timeout_s`."""
    try:
        await asyncio.wait_for(consumer.topics(), timeout_s)
    except (TimeoutError, KafkaError, OSError):
        return False
    return True


# a worker that reports is live unless stalled: "paused" is one whose intake is full (busy, not gone); the
# chaos test caught the breaker opening on a fleet whose only worker was paused under load
LIVE_STATES = ("serving", "paused")


async def feed_health(settings: Settings, health: HealthView, stop: asyncio.Event, interval_s: float = 0.1) -> None:
    """Keep each model's health current: live workers from the status topic (serving or paused workers whose
    heartbeat is fresh), outcomes from the usage records and the DLQ copies of model-topic records, read from
    now on; and the clock's part (missed deadlines, cool-downs, worker expiry) every `interval_s`."""
    topics = settings.kafka.topics
    codec = Codec()
    wait_ms = settings.latency.background_fetch_max_wait_ms
    status = StatusReader(settings, from_start=False, recent=RECENT_REPORTS, fetch_max_wait_ms=wait_ms)
    outcomes = make_consumer(
        settings, topics.usage, topics.dlq, group_id=None, auto_offset_reset="latest", fetch_max_wait_ms=wait_ms
    )
    fetch = Fetch(outcomes, settings, name="router.outcomes")
    mac = record_mac(settings.kafka.record_key)
    await status.start(stop)
    await with_retry("router.outcomes.start", outcomes.start, stop=stop)
    fresh_within_ms = 3 * settings.latency.status_interval_ms + 1000
    reach_ms, reachable = 0, True
    last_ms, stall_ms = int(time.time() * 1000), max(1000, int(interval_s * 10_000))
    try:
        while not stop.is_set():
            try:
                await status.poll(timeout_ms=0)
                batch = await fetch.getmany(timeout_ms=int(interval_s * 1000))
            except KafkaError as exc:
                log.debug("router.health_poll_failed", error=repr(exc))
                health.blind(int(time.time() * 1000))
                await asyncio.sleep(interval_s)
                batch = {}
            now_ms = int(time.time() * 1000)
            if now_ms - last_ms > stall_ms:  # this process stalled (a stop, a long pause): it saw nothing meanwhile
                health.blind(now_ms)
            last_ms = now_ms
            for tp, records in batch.items():
                for r in records:
                    if tp.topic == topics.usage:
                        key = r.key if isinstance(r.key, bytes) else None
                        if mac is not None and not mac.verify(Kind.USAGE, key, r.value, r.headers):
                            continue  # not a worker's: says nothing about the model
                        try:
                            u = codec.decode_usage(r.value or b"")
                        except DecodeFailure:
                            continue
                        health.usage(u.model, u.finish, _tenant(settings, u.tenant), now_ms)
                        health.on_usage(u, now_ms)  # the views that hear of finished requests (dedup)
                    else:
                        h = headers_dict(r.headers)
                        model = _dlq_model(settings, h)
                        # bytes nobody could decode say nothing about the model that would have run them
                        if model is not None and h.get(Headers.ERROR_CODE) != UNDECODABLE:
                            body = codec.salvage(r.value or b"", ContentType.JSON) if r.value else {}
                            tenant = _tenant(settings, body.get("tenant"))
                            health.dead_letter(model, h.get(Headers.ERROR_CODE, "?"), tenant, now_ms)
            fresh = status.fresh(fresh_within_ms, now_ms=now_ms)
            if fresh:
                for m in settings.model_names:
                    live = [st for st in fresh if st.model == m and st.state in LIVE_STATES]
                    health.workers(m, len(live), sum(st.capacity for st in live), now_ms)
            else:
                # no worker of any model reports: every worker died, or the broker does not answer. Asked at
                # most once a second; while it answers, the models seen live since the start have no live
                # worker (one never seen live, as in a router run alone, is left as it is)
                if now_ms - reach_ms >= 1000:
                    reach_ms = now_ms
                    reachable = await _answers(outcomes)
                if not reachable:
                    health.blind(now_ms)
                else:
                    for m, b in health.breakers.items():
                        if b.seen_live:
                            health.workers(m, 0, 0, now_ms)
            health.tick(now_ms)
    finally:
        await fetch.stop()
        await outcomes.stop()
        await status.stop()
