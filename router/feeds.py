"""The tasks that keep the router's views current from Kafka (supervised by the loop in router/service.py):
each model's load from its topic's end offsets, its worker group's commits and the workers' status reports
(read through fleet/status.py's StatusReader)."""

from __future__ import annotations

import asyncio
import time

import structlog
from aiokafka.errors import KafkaError

from fleet.kafka import group_progress, make_consumer, with_retry
from fleet.settings import Settings
from fleet.status import StatusReader
from router.policies.overload import LoadTracker

log = structlog.get_logger(__name__)


async def feed_load(settings: Settings, load: LoadTracker, stop: asyncio.Event, interval_s: float = 0.5) -> None:
    """Track each model topic's backlog (end offsets minus the worker group's commits) and its live capacity."""
    from aiokafka.admin import AIOKafkaAdminClient

    from fleet.kafka import connection_kwargs

    topics = settings.kafka.topics
    admin = AIOKafkaAdminClient(**connection_kwargs(settings))
    ends = make_consumer(settings, group_id=None)
    status = StatusReader(settings, from_start=False, fetch_max_wait_ms=settings.latency.background_fetch_max_wait_ms)
    await with_retry("router.admin.start", admin.start, stop=stop)
    await with_retry("router.ends.start", ends.start, stop=stop)
    await status.start(stop)
    try:
        while not stop.is_set():
            try:
                await status.poll(timeout_ms=0)
            except KafkaError as exc:
                log.debug("router.status_poll_failed", error=repr(exc))
            fresh_within_ms = 3 * settings.latency.status_interval_ms + 1000
            for m in settings.models:
                topic = topics.model(m.name)
                try:
                    known = ends.partitions_for_topic(topic) or range(settings.kafka.model_partitions)
                    progress = await group_progress(ends, admin, topic, known, topics.worker_group(m.name))
                    cap = sum(st.capacity for st in status.fresh(fresh_within_ms, model=m.name))
                    end, done = sum(e for e, _ in progress), sum(c for _, c in progress)
                    load.update(m.name, end, done, time.monotonic(), cap)
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
        await status.stop()
        await ends.stop()
        await admin.close()
