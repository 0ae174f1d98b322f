"""A scripted producer and a recording consumer for the router loop's tests without a broker (its send, commit
and seek calls are what those tests look at; everything a broker would add is left out on purpose)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError


def json_record(
    tp: TopicPartition, offset: int, body: dict[str, Any], headers: list[tuple[str, bytes]], timestamp: int = 0
) -> ConsumerRecord[Any, Any]:
    """An intake record as the consumer hands it over: `body` as JSON, at `offset` of `tp`."""
    value = json.dumps(body).encode()
    return ConsumerRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        timestamp=timestamp,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=headers,
    )


class ScriptedProducer:
    """Acknowledges every send except those scripted to fail: topic -> what each send in turn raises (None:
    acknowledged)."""

    def __init__(
        self,
        fail: dict[str, list[BaseException | None]] | None = None,
        on_send: Callable[[str], None] | None = None,
    ) -> None:
        self.fail = fail or {}
        self.on_send = on_send  # called with the topic of each send, before its outcome is set
        self.tries: Counter[str] = Counter()
        self.acked: list[tuple[str, bytes, int | None]] = []  # (topic, value, partition)

        class Client:
            async def force_metadata_update(self) -> bool:
                return True

        self.client = Client()

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes | None]] | None = None,
        partition: int | None = None,
    ) -> asyncio.Future[None]:
        self.tries[topic] += 1
        if self.on_send is not None:
            self.on_send(topic)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        script = self.fail.get(topic, [])
        exc = script.pop(0) if script else None
        if exc is not None:
            fut.set_exception(exc)
        else:
            self.acked.append((topic, value, partition))
            fut.set_result(None)
        return fut

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await (await self.send(topic, value, key))

    def to(self, topic: str) -> list[bytes]:
        return [v for t, v, _ in self.acked if t == topic]

    def acked_to(self, topic: str) -> int:
        return len(self.to(topic))


class RecordingConsumer:
    """Records commits and seeks; `revoked`: the group moved on, so both fail as aiokafka's do then."""

    def __init__(self) -> None:
        self.commits: list[dict[object, int]] = []
        self.seeks: list[tuple[object, int]] = []
        self.revoked = False

    async def commit(self, offsets: dict[object, int]) -> None:
        if self.revoked:
            raise CommitFailedError("the group rebalanced")
        self.commits.append(dict(offsets))

    def seek(self, tp: object, offset: int) -> None:
        if self.revoked:
            raise IllegalStateError("no longer assigned")
        self.seeks.append((tp, offset))


async def no_pause(seconds: float) -> None:
    return None


def now_ms() -> int:
    """The router's clock, as the loop reads it for a batch."""
    return int(time.time() * 1000)
