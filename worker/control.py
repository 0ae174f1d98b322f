"""Control: every worker of the model reads every control message (no group) and acts on the
requests it holds. Today that is `Cancel`; one odd record is logged and skipped, never the end
of cancellation. With tenants configured a cancel says whose it is: the sender's API key (`fleet-api-key`), or,
for a cancel the router relayed from a tenant's intake (router/stages/cancel.py), the tenant as the record key
with the router's MAC over key and value. It stops only that tenant's runs of the id; one that says neither is
logged and ignored."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from contracts.codec import Codec, DecodeFailure, content_type_from_headers
from contracts.messages import Cancel
from fleet.fetch import Fetch
from fleet.kafka import make_consumer, with_retry
from fleet.record_mac import Kind, record_mac
from fleet.settings import Settings
from fleet.tenants import KeyRing, key_values
from worker.driver import EngineDriver
from worker.replies import Replies

log = structlog.get_logger(__name__)


class Control:
    def __init__(self, settings: Settings, driver: EngineDriver, replies: Replies, codec: Codec) -> None:
        self._settings = settings
        self._driver = driver
        self._replies = replies
        self._codec = codec
        self._keys = KeyRing.of(settings.tenants)
        self._mac = record_mac(settings.kafka.record_key)  # relayed cancels are accepted only with it

    async def run(self, stop: asyncio.Event) -> None:
        settings = self._settings
        topic = settings.kafka.topics.control
        consumer = make_consumer(
            settings, group_id=None, fetch_max_wait_ms=settings.latency.background_fetch_max_wait_ms
        )
        fetch = Fetch(consumer, settings, name="worker.control")
        await with_retry("worker.control.start", consumer.start, stop=stop)
        try:
            parts = await with_retry("worker.control.partitions", lambda: _partitions(consumer, topic), stop=stop)
            consumer.assign(parts)
            await consumer.seek_to_end(*parts)
            while not stop.is_set():
                for records in (await fetch.poll(timeout_ms=50)).values():
                    for rec in records:
                        try:
                            self.on_record(rec)
                        except Exception:  # one odd record never disables cancellation
                            log.exception("worker.control_failed", offset=rec.offset)
        finally:
            await fetch.stop()
            await consumer.stop()

    def on_record(self, rec: ConsumerRecord[Any, Any]) -> None:
        try:
            msg = self._codec.decode_control(rec.value or b"", content_type_from_headers(rec.headers))
        except DecodeFailure as exc:
            log.warning("worker.bad_control", code=exc.code.value, reason=exc.message[:200], offset=rec.offset)
            return
        if isinstance(msg, Cancel):
            held = bool(self._driver.by_request.get(msg.id))
            if not self._settings.tenants:  # the default tenant: any cancel stops the id, as before
                self._replies.deliver(self._driver.cancel(msg.id))
                log.info("worker.cancel", request_id=msg.id[:200], held=held)
                return
            keys = key_values(rec.headers or ())
            tenant = self._keys.tenant_of(keys[0]) if len(keys) == 1 else self._relayed_by(rec)
            if tenant is None:  # a cancel reaches only the sender's own requests: it must say who it is
                log.warning("worker.cancel_unauthenticated", request_id=msg.id[:200], held=held)
                return
            self._replies.deliver(self._driver.cancel(msg.id, tenant=tenant, any_tenant=False))
            log.info("worker.cancel", request_id=msg.id[:200], held=held, tenant=tenant)

    def _relayed_by(self, rec: ConsumerRecord[Any, Any]) -> str | None:
        """The tenant of a cancel the router relayed: the record key, where the router's MAC covers it."""
        key = rec.key if isinstance(rec.key, bytes) else None
        if self._mac is None or not key or not self._mac.verify(Kind.CANCEL, key, rec.value, rec.headers):
            return None
        name = key.decode("utf-8", "replace")
        return name if self._settings.tenant(name) is not None else None


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(50):
        await consumer.topics()  # refreshes cluster metadata
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        await asyncio.sleep(0.1)
    raise KafkaError(f"topic {topic} has no partitions (does it exist?)")
