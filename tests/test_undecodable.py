"""Issue 22 on real processes: a batch nothing can decode, on the intake or on a model topic, never stops a
partition. The router and worker copy it raw to the DLQ (reason `undecodable`, with where it was) and serve
the requests behind it; both stay alive and commit to the log end. The fleet here writes lz4 itself
(`compression_type`), so every internal topic it reads (model topics, replies, status, usage) is compressed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.messages import Done
from contracts.topics import Headers
from fleet.kafka import connection_kwargs, make_consumer
from tests.bad_batches import BAD, batch, produce_raw
from tests.fixtures_kafka import FleetProcs, started, write_config
from tests.kafka_helpers import RawPeer, header

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
async def lz4_fleet(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FleetProcs]:
    d = tmp_path_factory.mktemp("undecodable")
    cfg = write_config(
        d / "fleet.toml",
        [{"name": "u", "path": "none", "engine": "simulated", "simulated_tokens_per_s": 500.0}],
        prefix="undec",
        extra='compression_type = "lz4"',  # [latency]: the fleet's own producers compress
    )
    async with started(cfg, broker, d, [("u", "worker-u")]) as fleet:
        yield fleet


def request(rid: str, reply_to: str) -> bytes:
    return json.dumps({"id": rid, "reply_to": reply_to, "prompt": "hello", "model": "u", "max_tokens": 3}).encode()


async def committed_at_end(
    fleet: FleetProcs, topic: str, group: str, timeout_s: float = 30, want: list[int] | None = None
) -> list[tuple[int, int]]:
    """(end, committed) per partition, polled until they agree (or the committed offsets are `want`) or
    `timeout_s` passes (the caller asserts)."""
    s = fleet.settings
    ends = make_consumer(s, group_id=None)
    admin = AIOKafkaAdminClient(**connection_kwargs(s))
    await ends.start()
    await admin.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(ends.partitions_for_topic(topic) or [])] or [
            TopicPartition(topic, p) for p in range(s.kafka.intake_partitions)
        ]
        deadline = time.monotonic() + timeout_s
        while True:
            end = await ends.end_offsets(tps)
            done = await admin.list_consumer_group_offsets(group, partitions=tps)
            pairs = [(end[tp], done[tp].offset if tp in done else -1) for tp in tps]
            done_ = [c for _, c in pairs] == want if want is not None else all(e == c for e, c in pairs)
            if done_ or time.monotonic() > deadline:
                return pairs
            await asyncio.sleep(0.3)
    finally:
        await admin.close()
        await ends.stop()


def undecodable_copies(peer: RawPeer, topic: str) -> list[tuple[int, int, int]]:
    return sorted(
        (
            int(header(r, Headers.SOURCE_PARTITION) or -1),
            int(header(r, Headers.SOURCE_OFFSET) or -1),
            int(header(r, Headers.SOURCE_NEXT_OFFSET) or -1),
        )
        for r in peer.dlq
        if header(r, Headers.ERROR_CODE) == "undecodable" and header(r, Headers.SOURCE_TOPIC) == topic
    )


async def send_after(bootstrap: str, topic: str, partition: int, values: list[bytes], codec: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=0)
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v, partition=partition, headers=[("content-type", b"application/json")])
    finally:
        await producer.stop()


async def test_bad_batches_on_the_intake_are_dead_lettered_and_the_requests_behind_them_served(
    lz4_fleet: FleetProcs,
) -> None:
    s = lz4_fleet.settings
    intake = s.kafka.topics.requests
    reply = f"undec.replies.in-{uuid.uuid4().hex[:6]}"
    async with RawPeer(s, reply) as peer:
        bad: list[tuple[int, int, int]] = []
        ids: list[str] = []
        for p in range(s.kafka.intake_partitions):
            for i, (kind, make) in enumerate(BAD.items()):
                raw = make([request(f"never-{p}-{i}-{j}", reply) for j in range(2)])
                base = await produce_raw(s.kafka.bootstrap, TopicPartition(intake, p), raw)
                bad.append((p, base, base + 2))
                rid = f"in-{p}-{kind}-{uuid.uuid4().hex[:4]}"
                ids.append(rid)
                # valid requests behind each bad batch, compressed as librdkafka users often do
                await send_after(s.kafka.bootstrap, intake, p, [request(rid, reply)], ["snappy", "zstd", "gzip"][i % 3])
        for rid in ids:
            done = await peer.reply(rid, Done, timeout_s=60)
            assert done.usage.completion_tokens == 3
        await peer.wait_for(lambda _: len(undecodable_copies(peer, intake)) >= len(bad), "the DLQ copies")
        assert undecodable_copies(peer, intake) == sorted(bad)  # each bad batch copied once, where it was
        assert not any(e.id.startswith("never-") for e in peer.replies)
        last: dict[int, int] = {}  # a last request on each partition: the commit must reach just past it
        for p in range(s.kafka.intake_partitions):
            rid = f"in-last-{p}-{uuid.uuid4().hex[:4]}"
            last[p] = await produce_raw(s.kafka.bootstrap, TopicPartition(intake, p), batch([request(rid, reply)]))
            await peer.reply(rid, Done, timeout_s=60)
    assert lz4_fleet.procs["router"].poll() is None and lz4_fleet.procs["worker-u"].poll() is None
    want = [last[p] + 1 for p in range(s.kafka.intake_partitions)]
    pairs = await committed_at_end(lz4_fleet, intake, s.kafka.topics.router_group, want=want)
    assert [committed for _, committed in pairs] == want, (pairs, lz4_fleet.log("router")[-3000:])


async def test_bad_batches_on_a_model_topic_are_dead_lettered_and_the_requests_behind_them_served(
    lz4_fleet: FleetProcs,
) -> None:
    s = lz4_fleet.settings
    model_topic = s.kafka.topics.model("u")
    reply = f"undec.replies.m-{uuid.uuid4().hex[:6]}"
    async with RawPeer(s, reply) as peer:
        bad: list[tuple[int, int, int]] = []
        for p in range(s.kafka.model_partitions):
            for make in BAD.values():
                base = await produce_raw(s.kafka.bootstrap, TopicPartition(model_topic, p), make([b"x", b"y", b"z"]))
                bad.append((p, base, base + 3))
        ids = [f"m-{i}-{uuid.uuid4().hex[:4]}" for i in range(12)]
        for rid in ids:  # through the router: forwarded (lz4) behind the bad batches on every partition
            await peer.send(request(rid, reply))
        for rid in ids:
            await peer.reply(rid, Done, timeout_s=60)
        await peer.wait_for(lambda _: len(undecodable_copies(peer, model_topic)) >= len(bad), "the DLQ copies")
        assert undecodable_copies(peer, model_topic) == sorted(bad)
        # a last request written straight to each partition: the worker's commit must reach just past it (the
        # dev broker's reported log end is not a fair mark here: for a partition holding batches it cannot
        # parse, Tansu reports a high watermark below the offsets it gave them)
        last: dict[int, int] = {}
        for p in range(s.kafka.model_partitions):
            rid = f"m-last-{p}-{uuid.uuid4().hex[:4]}"
            last[p] = await produce_raw(s.kafka.bootstrap, TopicPartition(model_topic, p), batch([request(rid, reply)]))
            await peer.reply(rid, Done, timeout_s=60)
    assert lz4_fleet.procs["worker-u"].poll() is None
    want = [last[p] + 1 for p in range(s.kafka.model_partitions)]
    pairs = await committed_at_end(lz4_fleet, model_topic, s.kafka.topics.worker_group("u"), want=want)
    assert [committed for _, committed in pairs] == want, (pairs, lz4_fleet.log("worker-u")[-3000:])
