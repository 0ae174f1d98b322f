"""fleet/fetch.py against a real broker: a batch nothing can decode is reported once and stepped past, and no
record before, beside or after it is lost or repeated, whatever partition it sits on."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from fleet.fetch import Fetch, Undecodable
from fleet.kafka import ensure_topics, make_consumer
from fleet.settings import Settings, load_settings
from tests.bad_batches import BAD, batch, produce_raw

pytestmark = pytest.mark.integration


def settings_for(bootstrap: str) -> Settings:
    return load_settings(None, env={"FLEET_KAFKA_BOOTSTRAP": bootstrap})


async def drain(fetch: Fetch, want: int, *, max_records: int | None = None, timeout_s: float = 30) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        for recs in (await fetch.getmany(timeout_ms=100, max_records=max_records)).values():
            if max_records is not None:
                assert len(recs) <= max_records
            got += recs
    return got


@pytest.mark.parametrize("grouped", [True, False], ids=["group", "assign"])
async def test_bad_batches_are_stepped_past_and_nothing_else_is_lost(broker: str, grouped: bool) -> None:
    s = settings_for(broker)
    topic = f"fetch-{uuid.uuid4().hex[:8]}"
    await ensure_topics(s, {topic: 3})
    p0, p1, p2 = (TopicPartition(topic, p) for p in range(3))
    expected: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    bad_at: list[tuple[int, int, int]] = []
    made: dict[tuple[int, int], bytes] = {}
    producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=0)
    await producer.start()
    try:
        for i, (kind, make) in enumerate(BAD.items()):
            good = [f"p0-{i}-{j}".encode() for j in range(3)]
            await produce_raw(broker, p0, batch(good))
            expected[0] += good
            raw = bytes(make([b"x", b"y"]))
            base = await produce_raw(broker, p0, raw)
            bad_at.append((0, base, base + 2))
            made[(0, base)] = raw
            await producer.send_and_wait(topic, f"p1-{kind}".encode(), partition=1)
            expected[1].append(f"p1-{kind}".encode())
        base = await produce_raw(broker, p2, BAD["crc_mismatch"]([b"lonely"]))  # a bad batch and nothing after
        bad_at.append((2, base, base + 1))
        await producer.send_and_wait(topic, b"p0-last", partition=0)
        expected[0].append(b"p0-last")
    finally:
        await producer.stop()

    reported: list[Undecodable] = []

    async def report(bad: Undecodable) -> None:
        reported.append(bad)

    consumer = (
        make_consumer(s, topic, group_id=f"g-{uuid.uuid4().hex[:6]}")
        if grouped
        else make_consumer(s, group_id=None, auto_offset_reset="earliest")
    )
    await consumer.start()
    try:
        if not grouped:
            consumer.assign([p0, p1, p2])
            await consumer.seek_to_beginning(p0, p1, p2)
        async with Fetch(consumer, s, name="test", on_undecodable=report) as fetch:
            got = await drain(fetch, sum(map(len, expected.values())), max_records=4)
            deadline = time.monotonic() + 10
            while len(reported) < len(bad_at) and time.monotonic() < deadline:
                got += await drain(fetch, 1, timeout_s=0.5)
            by_part = {p: [r.value for r in got if r.partition == p] for p in range(3)}
            assert by_part == expected  # every good record once, in order, none lost beside a raise
            assert sorted((b.partition, b.first_offset, b.next_offset) for b in reported) == sorted(bad_at)
            assert fetch.undecodable_batches == len(bad_at)
            assert fetch.undecodable_offsets == sum(e - b for _, b, e in bad_at)
            ends = await consumer.end_offsets([p0, p1, p2])
            assert {tp.partition: await consumer.position(tp) for tp in (p0, p1, p2)} == {
                tp.partition: ends[tp] for tp in (p0, p1, p2)
            }
            for b in reported:  # the bytes as written, from the CRC on (the broker sets offset and epoch)
                if (b.partition, b.first_offset) in made:
                    assert b.raw[17:] == made[(b.partition, b.first_offset)][17:]
    finally:
        await consumer.stop()


async def test_a_failed_report_leaves_the_batch_for_the_next_call(broker: str) -> None:
    s = settings_for(broker)
    topic = f"fetch-{uuid.uuid4().hex[:8]}"
    await ensure_topics(s, {topic: 1})
    tp = TopicPartition(topic, 0)
    base = await produce_raw(broker, tp, BAD["garbage_snappy"]([b"a" * 40]))
    await produce_raw(broker, tp, batch([b"after"]))
    calls: list[int] = []

    async def flaky(bad: Undecodable) -> None:
        calls.append(bad.first_offset)
        if len(calls) == 1:
            raise KafkaConnectionError("the DLQ is away")

    consumer = make_consumer(s, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        async with Fetch(consumer, s, name="test", on_undecodable=flaky) as fetch:
            first = await fetch.getmany(timeout_ms=2000)
            assert first == {} and calls == [base] and await consumer.position(tp) == base
            assert fetch.undecodable_batches == 0  # not counted: it has no outcome yet
            got = await drain(fetch, 1)
            assert [r.value for r in got] == [b"after"]
            assert calls == [base, base] and fetch.undecodable_batches == 1
    finally:
        await consumer.stop()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_every_codec_a_producer_may_use_is_read(broker: str, codec: str) -> None:
    s = settings_for(broker)
    topic = f"codec-{codec}-{uuid.uuid4().hex[:6]}"
    await ensure_topics(s, {topic: 1})
    producer = AIOKafkaProducer(bootstrap_servers=broker, compression_type=codec, linger_ms=5)
    await producer.start()
    values = [f'{{"id": "{codec}-{i}", "prompt": "{"word " * 50}"}}'.encode() for i in range(20)]
    try:
        await asyncio.gather(*[await producer.send(topic, v, partition=0) for v in values])
    finally:
        await producer.stop()
    consumer: AIOKafkaConsumer = make_consumer(s, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_beginning(TopicPartition(topic, 0))
        async with Fetch(consumer, s, name="test") as fetch:
            got = await drain(fetch, len(values))
            assert [r.value for r in got] == values and fetch.undecodable_batches == 0
    finally:
        await consumer.stop()
