"""The outbox: every record the worker produces (reply events, DLQ copies, usage records) goes
through here, and each ends with a recorded outcome.

`submit()` never blocks and never raises: it queues the record on its destination's lane and
returns a future that resolves to `DELIVERED` once the broker acknowledged it, or to
`UNDELIVERABLE` when it never can be (the broker refused it for good: no permission, too large,
a schema that rejects it; or the topic stays unknown after `metadata_attempts` metadata waits).
Retriable failures (a broker away, a leader moving, a full buffer) are retried with backoff for
as long as the worker runs. The future is cancelled only when the outbox closes first: the
request stays uncommitted and is redone elsewhere.

One lane (an asyncio task with a FIFO) per destination topic: a topic whose metadata never
comes (each `send()` then waits the producer's request timeout) holds up only its own records,
never the engine loop or the other requests' replies. Within a lane records go out in order, so
one request's events stay ordered unless a retry reorders them (clients drop duplicates by
`seq`/`id`).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

from fleet.kafka import is_retriable
from fleet.settings import WorkerSettings

log = structlog.get_logger(__name__)

_LANE_IDLE_S = 30.0  # a lane with nothing to send for this long ends (reply topics come and go)


class Delivery(enum.StrEnum):
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"


@dataclass(slots=True)
class _Item:
    topic: str
    value: bytes | None  # None: a tombstone (compacted topics)
    key: bytes | None
    headers: list[tuple[str, bytes | None]]
    result: asyncio.Future[Delivery]
    what: str  # for logs: the request id, or what the record is
    failures: int = 0
    metadata_failures: int = 0


@dataclass(slots=True)
class _Lane:
    queue: deque[_Item] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Outbox:
    def __init__(self, producer: AIOKafkaProducer, settings: WorkerSettings, *, name: str, known_topic: str) -> None:
        self._producer = producer
        self._settings = settings
        self._name = name
        self._known_topic = known_topic  # a topic the broker surely knows: tells "topic missing" from "broker away"
        self._lanes: dict[str, _Lane] = {}
        self._dead: dict[str, float] = {}  # topic -> monotonic time until which it fails fast
        self._pending: set[asyncio.Future[Delivery]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._closed = False
        self.delivered = 0
        self.undeliverable = 0
        self.retries = 0

    def submit(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
        what: str,
    ) -> asyncio.Future[Delivery]:
        """Queue one record; never blocks, never raises. The future says how it ended."""
        result: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        if self._closed:
            result.cancel()
            return result
        self._pending.add(result)
        result.add_done_callback(self._pending.discard)
        item = _Item(topic, value, key, list(headers or ()), result, what)
        if self._is_dead(topic):
            self._give_up(item, "the topic was undeliverable moments ago")
            return result
        self._enqueue(item)
        return result

    async def close(self, timeout_s: float) -> None:
        """Let queued records go out for up to `timeout_s`, then cancel what is left (left uncommitted)."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=timeout_s)
        self._closed = True
        for t in self._timers:
            t.cancel()
        lanes = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in lanes:
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        for fut in list(self._pending):
            fut.cancel()

    # -- lanes --------------------------------------------------------------------------------------

    def _enqueue(self, item: _Item, *, front: bool = False) -> None:
        if self._closed:
            item.result.cancel()
            return
        lane = self._lanes.get(item.topic)
        if lane is None or lane.task is None or lane.task.done():
            lane = _Lane()
            self._lanes[item.topic] = lane
            lane.task = asyncio.create_task(self._run_lane(item.topic, lane), name=f"outbox-{self._name}")
        if front:
            lane.queue.appendleft(item)
        else:
            lane.queue.append(item)
        lane.wake.set()

    async def _run_lane(self, topic: str, lane: _Lane) -> None:
        while True:
            if not lane.queue:
                lane.wake.clear()
                try:
                    await asyncio.wait_for(lane.wake.wait(), _LANE_IDLE_S)
                except TimeoutError:
                    if not lane.queue:
                        if self._lanes.get(topic) is lane:
                            del self._lanes[topic]
                        return
                continue
            item = lane.queue.popleft()
            if item.result.done():
                continue
            if self._is_dead(topic):
                self._give_up(item, "the topic was undeliverable moments ago")
                continue
            try:
                ack = await self._producer.send(topic, item.value, key=item.key, headers=item.headers)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # raised before the record was queued: too large, no metadata, ...
                self._failed(item, exc)
                continue
            ack.add_done_callback(lambda f, item=item: self._acked(item, f))

    def _acked(self, item: _Item, ack: asyncio.Future[Any]) -> None:
        if ack.cancelled():  # the producer stopped first
            item.result.cancel()
            return
        exc = ack.exception()
        if exc is None:
            self.delivered += 1
            if not item.result.done():
                item.result.set_result(Delivery.DELIVERED)
            return
        self._failed(item, exc)

    # -- failures -----------------------------------------------------------------------------------

    def _failed(self, item: _Item, exc: BaseException) -> None:
        if item.result.done():
            return
        item.failures += 1
        if isinstance(exc, KafkaTimeoutError | UnknownTopicOrPartitionError) and self._topic_missing(item.topic):
            item.metadata_failures += 1
            if item.metadata_failures >= self._settings.metadata_attempts:
                self._dead[item.topic] = time.monotonic() + self._settings.dead_topic_ttl_s
                self._give_up(item, f"topic unknown to the broker after {item.metadata_failures} tries: {exc!r}")
                return
        elif not is_retriable(exc):
            self._give_up(item, repr(exc))
            return
        self.retries += 1
        backoff_s = min(self._settings.send_backoff_max_ms / 1000, 0.1 * 2 ** min(item.failures, 10))
        log.warning(
            "worker.send_retry",
            outbox=self._name,
            topic=item.topic[:250],
            what=item.what[:200],
            attempt=item.failures,
            backoff_s=round(backoff_s, 2),
            error=repr(exc)[:300],
        )
        handle = asyncio.get_running_loop().call_later(backoff_s, self._retry, item)
        self._timers.add(handle)

    def _retry(self, item: _Item) -> None:
        self._timers = {t for t in self._timers if not t.cancelled() and t.when() > asyncio.get_running_loop().time()}
        if not item.result.done():
            self._enqueue(item, front=True)

    def _give_up(self, item: _Item, reason: str) -> None:
        self.undeliverable += 1
        log.error(
            "worker.undeliverable",
            outbox=self._name,
            topic=item.topic[:250],
            what=item.what[:200],
            bytes=len(item.value or b""),
            reason=reason[:500],
        )
        if not item.result.done():
            item.result.set_result(Delivery.UNDELIVERABLE)

    def _is_dead(self, topic: str) -> bool:
        until = self._dead.get(topic)
        if until is None:
            return False
        if time.monotonic() >= until:
            del self._dead[topic]
            return False
        return True

    def _topic_missing(self, topic: str) -> bool:
        """The broker answers (it knows a fleet topic) but not about `topic`."""
        try:
            known = self._producer.client.cluster.topics()
        except Exception:  # metadata not there yet: not proof of anything
            return False
        return self._known_topic in known and topic not in known
