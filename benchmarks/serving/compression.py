"""What each producer codec costs the fleet's two hot records: a reply chunk (a few tokens of text) and a forwarded
request (a paragraph of prompt). For every codec Kafka defines, on the embedded broker, with the fleet's own
producer settings (linger 0: each record is its own batch, as on the reply and request paths):

    bytes on the wire  the stored batch per record (what the produce request carries), read back raw
    one hop            produce -> a consumer on the topic sees it (fetch_max_wait_ms as configured), p50/p99 ms

Run `python -m benchmarks.serving.compression [--records N]`; results go to benchmarks/results/compression_<machine>_
<date>_<commit>.{json,md}. The default of `[latency] compression_type` is chosen from this (docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from dataclasses import asdict, dataclass

import msgspec
from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest

from benchmarks.common.results import collect_meta, result_path
from contracts.codec import Codec
from contracts.messages import Chunk, Request
from fleet.batches import scan
from fleet.broker import EmbeddedBroker, free_port
from fleet.kafka import ProducerPurpose, ensure_topics, make_consumer, make_producer
from fleet.settings import CompressionType, Settings, load_settings

PROMPT = (
    "Summarise the following support ticket for the on-call engineer in three bullet points, keeping error codes "
    "and timestamps exact. Customer reports that since the deploy at 09:42 UTC the checkout service returns HTTP "
    "502 for roughly one request in twenty, mostly on the EU cluster; retries usually succeed. They attached a "
    "trace showing the payment gateway call timing out after 3,000 ms while the gateway's own dashboard shows p99 "
    "latency of 180 ms. The previous release did not show this. They ask whether the connection pool size was "
    "changed and whether a rollback is advisable before the evening traffic peak."
)


@dataclass(frozen=True, slots=True)
class Row:
    record: str
    codec: str
    value_bytes: int
    wire_bytes: float  # per record, the stored batch
    hop_p50_ms: float
    hop_p99_ms: float


def records(codec: Codec) -> dict[str, bytes]:
    chunk = Chunk(id="req-5f1c2a9e", seq=7, text=" the payment gateway", run_id="3f2a9c0d1e4b5a6f")
    request = Request(id="req-5f1c2a9e", reply_to="llm.replies.billing", prompt=PROMPT, model="auto", max_tokens=256)
    return {"reply chunk": codec.encode(chunk), "forwarded request": codec.encode(request)}


def settings_for(bootstrap: str, compression: CompressionType) -> Settings:
    s = load_settings(None, env={"FLEET_KAFKA_BOOTSTRAP": bootstrap})
    return msgspec.structs.replace(s, latency=msgspec.structs.replace(s.latency, compression_type=compression))


async def wire_bytes(bootstrap: str, tp: TopicPartition) -> tuple[int, int]:
    """(bytes of every stored batch, batches) of a partition, read raw from its start."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        node = client.cluster.leader_for_partition(tp)
        total, count, offset = 0, 0, 0
        while True:
            resp = await client.send(
                node, FetchRequest(100, 1, 8 << 20, 0, [(tp.topic, [(tp.partition, offset, 8 << 20)])])
            )
            raw = bytes(resp.topics[0][1][0][-1] or b"")
            batches = scan(raw, tp.topic, tp.partition, offset).batches
            if not batches:
                return total, count
            total += sum(len(b.raw) for b in batches)
            count += len(batches)
            offset = batches[-1].next_offset
    finally:
        await client.close()


async def measure(bootstrap: str, codec: CompressionType, name: str, value: bytes, n: int) -> Row:
    s = settings_for(bootstrap, codec)
    topic = f"bench-compression-{codec.value}-{uuid.uuid4().hex[:6]}"
    await ensure_topics(s, {topic: 1})
    tp = TopicPartition(topic, 0)
    producer = make_producer(s, purpose=ProducerPurpose.REPLIES)
    consumer = make_consumer(s, group_id=None)
    await producer.start()
    await consumer.start()
    hops: list[float] = []
    try:
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)
        for _ in range(n):
            t0 = time.perf_counter()
            await producer.send_and_wait(topic, value, partition=0)
            got = False
            while not got:
                got = any((await consumer.getmany(tp, timeout_ms=100)).values())
            hops.append((time.perf_counter() - t0) * 1000)
    finally:
        await consumer.stop()
        await producer.stop()
    total, batches = await wire_bytes(bootstrap, tp)
    hops.sort()
    return Row(
        name,
        codec.value,
        len(value),
        round(total / max(1, batches), 1),
        round(statistics.median(hops), 2),
        round(hops[int(0.99 * (len(hops) - 1))], 2),
    )


async def main_async(n: int) -> list[Row]:
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    rows: list[Row] = []
    try:
        for name, value in records(Codec()).items():
            for codec in CompressionType:
                rows.append(await measure(broker.bootstrap, codec, name, value, n))
    finally:
        await broker.stop()
    return rows


def report(rows: list[Row], meta: dict[str, object]) -> str:
    lines = [
        "# Producer codecs on the fleet's hot records",
        "",
        f"Machine: {meta.get('machine_detail')}; commit {meta.get('commit')}; embedded broker (Tansu); linger 0, "
        "one record per batch as on the request and reply paths; `python -m benchmarks.serving.compression`.",
        "",
        "| record | codec | value bytes | bytes on the wire | one hop p50 ms | one hop p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r.record} | {r.codec} | {r.value_bytes} | {r.wire_bytes:.0f} | {r.hop_p50_ms:.2f} | {r.hop_p99_ms:.2f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=300, help="records per codec and kind")
    args = ap.parse_args()
    rows = asyncio.run(main_async(args.records))
    run = collect_meta(simulated=False)
    meta = asdict(run)
    data = json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1)
    result_path("compression", run, "json").write_text(data)
    text = report(rows, meta)
    result_path("compression", run, "md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
