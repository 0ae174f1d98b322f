"""Small helpers for tests that talk to the broker directly, as a non-Python producer would."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts.codec import Codec, content_type_from_headers
from contracts.messages import Chunk, Done, Error, WorkerStatus
from fleet.kafka import ensure_topics
from fleet.settings import Settings
from fleet.status import StatusReader


async def first_status(
    settings: Settings, match: Callable[[WorkerStatus], bool], *, timeout_s: float = 30, from_start: bool = False
) -> WorkerStatus:
    """The first worker status on the status topic that `match`es: from now on, or from the topic's
    start with `from_start`. A worker's id carries its pid: `{model}-{host}-{pid}-{suffix}`."""
    async with StatusReader(settings, from_start=from_start) as reader:
        return await reader.first(match, timeout_s)


def status_pid(st: WorkerStatus) -> int:
    """The pid of the worker process that sent `st`."""
    return int(st.worker_id.split("-")[-2])


class RawPeer:
    """Produces raw bytes to the intake and reads a reply topic and the DLQ from the start."""

    def __init__(self, settings: Settings, reply_topic: str) -> None:
        self.settings = settings
        self.reply_topic = reply_topic
        self.codec = Codec()
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=0)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap, fetch_max_wait_ms=5, enable_auto_commit=False
        )
        self.replies: list[Chunk | Done | Error] = []
        self.dlq: list[Any] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RawPeer:
        await ensure_topics(self.settings, {self.reply_topic: 2})
        await self.producer.start()
        await self.consumer.start()
        await self.consumer.topics()
        tps = [
            TopicPartition(t, p)
            for t in (self.reply_topic, self.settings.kafka.topics.dlq)
            for p in sorted(self.consumer.partitions_for_topic(t) or [])
        ]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=50)
            for tp, records in batch.items():
                for r in records:
                    if tp.topic == self.reply_topic:
                        self.replies.append(self.codec.decode_reply(r.value, content_type_from_headers(r.headers)))
                    else:
                        self.dlq.append(r)

    async def send(
        self,
        value: bytes,
        content_type: bytes | None = b"application/json",
        key: bytes | None = None,
        topic: str | None = None,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> None:
        """`headers`, when given, replace the content-type header (null values and duplicates allowed)."""
        if headers is None:
            headers = [("content-type", content_type)] if content_type is not None else []
        await self.producer.send_and_wait(topic or self.settings.kafka.topics.requests, value, key=key, headers=headers)

    async def wait_for(self, pred: Any, what: str, timeout_s: float = 30) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for item in list(self.replies) + list(self.dlq):
                if pred(item):
                    return item
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; replies={self.replies[-5:]} dlq={len(self.dlq)}")

    async def reply(self, rid: str, kind: type, timeout_s: float = 30) -> Any:
        return await self.wait_for(
            lambda e: isinstance(e, kind) and getattr(e, "id", None) == rid, f"{kind.__name__} for {rid}", timeout_s
        )

    async def dlq_record(self, value: bytes, timeout_s: float = 30) -> Any:
        return await self.wait_for(
            lambda r: not isinstance(r, Chunk | Done | Error) and r.value == value, "a DLQ record", timeout_s
        )


def header(record: Any, name: str) -> str | None:
    for k, v in record.headers or ():
        if k == name:
            return bytes(v).decode()
    return None


async def worker_group_progress(
    settings: Settings, model: str, timeout_s: float, *, interval_s: float = 0.3
) -> list[tuple[int, int]]:
    """(log end, committed offset) per partition of `model`'s topic for its worker group, polled until
    every committed offset equals its end or `timeout_s` passes (the caller asserts)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from fleet.kafka import connection_kwargs, group_progress

    topic, group = settings.kafka.topics.model(model), settings.kafka.topics.worker_group(model)
    ends = AIOKafkaConsumer(**connection_kwargs(settings))
    admin = AIOKafkaAdminClient(**connection_kwargs(settings))
    await ends.start()
    await admin.start()
    try:
        t0 = time.monotonic()
        while True:
            progress = await group_progress(ends, admin, topic, range(settings.kafka.model_partitions), group)
            if all(end == committed for end, committed in progress) or time.monotonic() - t0 > timeout_s:
                return progress
            await asyncio.sleep(interval_s)
    finally:
        await admin.close()
        await ends.stop()


def resumed_ids(log: str) -> set[str]:
    """Requests a worker's log says it took over with tokens already generated (console or JSON logs)."""
    out: set[str] = set()
    for line in log.splitlines():
        if "worker.resuming" not in line:
            continue
        if line.lstrip().startswith("{"):
            rec = json.loads(line)
            if rec.get("tokens", 0) > 0:
                out.add(rec["request_id"])
            continue
        rid, tokens = re.search(r"request_id=(\S+)", line), re.search(r"tokens=(\d+)", line)
        if rid and tokens and int(tokens.group(1)) > 0:
            out.add(rid.group(1))
    return out
