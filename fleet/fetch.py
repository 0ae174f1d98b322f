"""Fetching that a batch nothing can decode never stops: every consumer of the fleet reads through `Fetch`.

aiokafka decodes a partition's fetched batches as the caller iterates them; a batch it cannot decode (a codec
whose library is missing, an unknown codec id, a CRC mismatch, records cut short) raises out of `getmany`
with the partition's position still before the batch, so each later `getmany` fetches it and raises again:
one such record stopped the router's intake partition for good (issue 22). Worse, `getmany` over several
partitions drains them one by one, advancing each position as it goes, and a raise on a later partition
throws away the records already drained from earlier ones.

So `Fetch.getmany` reads so that a raise can lose nothing (one record across all partitions first, which
touches at most one partition, then each partition on its own), and when a partition raises it reads that
partition's bytes itself (one raw fetch request at the position), walks them with `fleet.batches` (which
decodes what decodes and says why the rest does not), hands the caller the records before and between the
bad batches, gives each bad batch to `on_undecodable` (the router and workers write it to the DLQ with
reason `undecodable`) and seeks past it. If that hand-off fails the position is left where it was: the
batch is tried again on the next call, never skipped without an outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import CorruptRecordException, IllegalStateError, KafkaError, UnsupportedCodecError
from aiokafka.protocol.fetch import FetchRequest

from contracts.topics import Headers
from fleet.batches import Batch, scan
from fleet.kafka import connection_kwargs
from fleet.records import Header, dlq_record
from fleet.settings import Settings

log = structlog.get_logger(__name__)

UNDECODABLE = "undecodable"  # the DLQ code (fleet-error-code) of a batch that cannot be decoded

Records = dict[TopicPartition, list[ConsumerRecord[Any, Any]]]

# the most one raw fetch reads of a partition: a bad batch larger than the consumer's per-partition limit is
# still returned whole (a fetch returns at least its first batch), this bounds what else comes with it
_RAW_FETCH_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A batch of `topic`/`partition` covering offsets [first_offset, next_offset) that cannot be decoded."""

    topic: str
    partition: int
    first_offset: int
    next_offset: int
    reason: str
    raw: bytes

    def dlq(self, max_bytes: int) -> tuple[bytes, bytes | None, list[Header]]:
        """The DLQ copy: the raw batch (cut to fit `max_bytes`), where it was and why, code `undecodable`."""
        value, key, headers = dlq_record(
            self.raw, None, None, self.topic, self.partition, self.first_offset, UNDECODABLE, self.reason, max_bytes
        )
        return value, key, [*headers, (Headers.SOURCE_NEXT_OFFSET, str(self.next_offset).encode())]


OnUndecodable = Callable[[Undecodable], Awaitable[None]]


def is_decode_error(exc: BaseException) -> bool:
    """Whether `exc`, raised by getmany, is about the bytes of a fetched batch rather than the broker or the
    group: aiokafka's codec and corruption errors, and anything that is not a KafkaError at all (a
    decompressor's or parser's own exception escapes getmany as it is)."""
    if isinstance(exc, CorruptRecordException | UnsupportedCodecError):
        return True
    return not isinstance(exc, KafkaError)  # a bad gzip stream raises OSError (BadGzipFile): a decode error too


class Fetch:
    """`getmany` over a consumer that moves past undecodable batches; `start`/`stop` or `async with`.

    `on_undecodable` gets each bad batch before the consumer seeks past it (raise a KafkaError or OSError
    from it to leave the batch for the next call); without one, the batch is logged and counted only
    (consumers of the fleet's own state topics, which have no DLQ to write to)."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        settings: Settings,
        *,
        name: str,
        on_undecodable: OnUndecodable | None = None,
    ) -> None:
        self.consumer = consumer
        self._settings = settings
        self._name = name
        self._on_undecodable = on_undecodable
        self._client: AIOKafkaClient | None = None
        self.undecodable_batches = 0  # bad batches moved past
        self.undecodable_offsets = 0  # offsets they covered

    async def __aenter__(self) -> Fetch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> Records:
        parts = partitions or tuple(self.consumer.assignment())
        if len(parts) <= 1:
            got, suspects = await self._guarded(parts, timeout_ms, max_records)
        else:
            # one record touches at most one partition: a raise here loses nothing already drained
            got, suspects = await self._guarded(parts, timeout_ms, 1)
            room = None if max_records is None else max_records - 1
            for tp in parts if got else ():  # each partition alone: a raise loses only its own undrained records
                if room is not None and room <= 0:
                    break
                more, bad = await self._guarded((tp,), 0, room)
                suspects += bad
                for mtp, recs in more.items():
                    got.setdefault(mtp, []).extend(recs)
                    if room is not None:
                        room -= len(recs)
        if suspects:
            room = None if max_records is None else max(0, max_records - sum(map(len, got.values())))
            for tp, recs in (await self._step_past(suspects, room)).items():
                got.setdefault(tp, []).extend(recs)
        return got

    async def _guarded(
        self, parts: tuple[TopicPartition, ...], timeout_ms: int, max_records: int | None
    ) -> tuple[Records, list[TopicPartition]]:
        """The consumer's getmany over `parts`; when a batch of theirs does not decode, no records and `parts` as
        the suspects (any other error is raised as it is)."""
        try:
            return dict(await self.consumer.getmany(*parts, timeout_ms=timeout_ms, max_records=max_records)), []
        except Exception as exc:
            if not is_decode_error(exc):
                raise
            self._noticed(exc, list(parts))
            return {}, list(parts)

    async def poll(self, *, timeout_ms: int, max_records: int | None = None, backoff_s: float = 0.5) -> Records:
        """`getmany` for a loop that only waits on the broker: a Kafka error (the broker away, a coordinator
        moving) is logged and waited out for `backoff_s`, and the turn returns no records."""
        try:
            return await self.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            log.warning("kafka.fetch_error", consumer=self._name, error=repr(exc))
            await asyncio.sleep(backoff_s)
            return {}

    def _noticed(self, exc: BaseException, parts: list[TopicPartition]) -> None:
        log.warning(
            "kafka.undecodable_fetch",
            consumer=self._name,
            error=repr(exc)[:300],
            partitions=[f"{tp.topic}:{tp.partition}" for tp in parts][:20],
        )

    async def _step_past(self, suspects: list[TopicPartition], room: int | None) -> Records:
        """Read each suspect partition's bytes at its position; where a batch does not decode, hand over the
        records before and between bad batches (at most `room`), report the bad batches and seek past them."""
        out: Records = {}
        for tp in suspects:
            if room is not None and room <= 0:
                break
            try:
                position = await self.consumer.position(tp)
                raw = await self._raw_fetch(tp, position)
            except (KafkaError, OSError, IllegalStateError) as exc:  # retried on the next call
                log.warning("kafka.raw_fetch_failed", consumer=self._name, partition=str(tp), error=repr(exc))
                continue
            if raw is None:
                continue
            batches = scan(raw, tp.topic, tp.partition, position)
            if batches.first_bad is None:
                continue  # the raise came from another partition (or was resolved meanwhile)
            records, cursor = await self._take(tp, batches.batches, position, room)
            if cursor == position:
                continue
            try:
                self.consumer.seek(tp, cursor)
            except IllegalStateError:  # revoked meanwhile: its new owner meets the batch again
                continue
            if records:
                out[tp] = records
                if room is not None:
                    room -= len(records)
        return out

    async def _take(
        self, tp: TopicPartition, batches: list[Batch], position: int, room: int | None
    ) -> tuple[list[ConsumerRecord[Any, Any]], int]:
        """Records to hand over and the offset to continue from, reporting bad batches on the way; stops at
        `room` records, or at a bad batch whose report failed (left for the next call)."""
        records: list[ConsumerRecord[Any, Any]] = []
        cursor = position
        for b in batches:
            if b.error is not None:
                # from the position on: records of the batch before it (if any) decoded and were handed over
                first = max(b.first_offset, position)
                bad = Undecodable(tp.topic, tp.partition, first, b.next_offset, b.error, b.raw)
                if not await self._report(bad):
                    break
                cursor = max(cursor, b.next_offset)
                continue
            for r in b.records:
                if room is not None and len(records) >= room:
                    return records, cursor
                records.append(r)
                cursor = r.offset + 1
            cursor = max(cursor, b.next_offset)
        return records, cursor

    async def _report(self, bad: Undecodable) -> bool:
        log.error(
            "kafka.undecodable_batch",
            consumer=self._name,
            topic=bad.topic,
            partition=bad.partition,
            first_offset=bad.first_offset,
            next_offset=bad.next_offset,
            reason=bad.reason,
            bytes=len(bad.raw),
        )
        if self._on_undecodable is not None:
            try:
                await self._on_undecodable(bad)
            except (KafkaError, OSError) as exc:
                log.warning("kafka.undecodable_not_reported", consumer=self._name, error=repr(exc))
                return False
        self.undecodable_batches += 1
        self.undecodable_offsets += bad.next_offset - bad.first_offset
        return True

    async def _raw_fetch(self, tp: TopicPartition, offset: int) -> bytes | None:
        """The partition's record set at `offset` as the broker sends it (None when it answers an error)."""
        if self._client is None:
            client = AIOKafkaClient(**connection_kwargs(self._settings))
            await client.bootstrap()
            self._client = client
        client = self._client
        node = client.cluster.leader_for_partition(tp)
        if node is None or node < 0:
            await client.force_metadata_update()
            node = client.cluster.leader_for_partition(tp)
            if node is None or node < 0:
                return None
        # a short wait: the dev broker answers a fetch with max_wait 0 with no data at all
        request = FetchRequest(100, 1, _RAW_FETCH_BYTES, 0, [(tp.topic, [(tp.partition, offset, _RAW_FETCH_BYTES)])])
        response = await client.send(node, request)
        for _topic, partitions in response.topics:
            for part in partitions:
                if part[0] == tp.partition:
                    if part[1] != 0:
                        log.warning("kafka.raw_fetch_error", partition=str(tp), error_code=part[1])
                        return None
                    return bytes(part[-1] or b"")
        return None
