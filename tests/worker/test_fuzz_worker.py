"""Worker-side fuzzing (issue 9): bytes straight onto a model topic and onto the control topic, as a
peer that bypasses the router would produce them: null and duplicate headers, binary garbage, huge
values, msgpack oddities, random mutations of valid requests. Afterwards a normal request completes,
the worker is the process that started, and its group's committed offsets equal the log end on every
partition of the model topic (every record reached an outcome). Simulated engine (no model)."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from contracts.messages import Chunk, Done
from tests.fixtures_kafka import FleetProcs, started, write_config
from tests.kafka_helpers import RawPeer, worker_group_progress

pytestmark = pytest.mark.slow

MODEL = "fz"


@pytest.fixture(scope="module")
async def fuzz_fleet(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FleetProcs]:
    d: Path = tmp_path_factory.mktemp("wfuzz")
    cfg = write_config(
        d / "fleet.toml",
        [{"name": MODEL, "path": "none", "engine": "simulated", "simulated_tokens_per_s": 500.0}],
        prefix="wfuzz",
        partitions=2,
        extra="request_timeout_ms = 3000",  # [latency]: the '.' reply topic is given up after 2 x 3 s, not 2 x 15 s
    )
    async with started(cfg, broker, d, [(MODEL, "worker")]) as fleet:
        yield fleet


Headers = list[tuple[str, bytes | None]]


def corpus(reply: str, rng: random.Random) -> list[tuple[bytes | None, Headers]]:
    """(value, headers) records for the model topic."""
    json_ct: Headers = [("content-type", b"application/json")]
    mp_ct: Headers = [("content-type", b"application/msgpack")]

    def body(**kw: object) -> dict[str, object]:
        b: dict[str, object] = {"id": f"wfz-{uuid.uuid4().hex[:10]}", "reply_to": reply, "prompt": "hi", "model": MODEL}
        b.update(max_tokens=4)
        b.update(kw)
        return b

    valid = json.dumps(body()).encode()
    out: list[tuple[bytes | None, Headers]] = [
        (valid, [("content-type", None)]),  # a null header value
        (valid, [("content-type", b"application/json"), ("content-type", b"application/msgpack")]),  # duplicates
        (valid, [("content-type", b"\xff\xfe")]),  # not UTF-8
        (valid, [("content-type", b"text/plain")]),
        (b"\x00\xff\x13garbage" * 10, json_ct),
        (b"\x00\xff\x13garbage" * 10, mp_ct),
        (None, json_ct),  # a tombstone
        (b"", json_ct),
        (b"[" * 5000 + b"]" * 5000, json_ct),  # deep nesting
        (json.dumps(body(prompt="y" * 1_100_000)).encode(), json_ct),  # over a MiB: its DLQ copy must be cut
        (b"z" * 1_500_000, json_ct),  # huge garbage
        (msgspec.msgpack.encode(body(metadata={"k": msgspec.msgpack.Ext(1, b"x")})), mp_ct),
        (msgspec.msgpack.encode({**body(), "metadata": {1: 2}}), mp_ct),
        (msgspec.msgpack.encode(body(timeout_ms=2**64 - 1)), mp_ct),
        (json.dumps(body(timeout_ms=10**30)).encode(), json_ct),
        (json.dumps(body(temperature=1e-40)).encode(), json_ct),
        (json.dumps(body(stop=["a" * 5000] * 50)).encode(), json_ct),
        (json.dumps(body(reply_to=".")).encode(), json_ct),
        (json.dumps(body(reply_to="x" * 300)).encode(), json_ct),
        (json.dumps(body(id="i" * 100_000)).encode(), json_ct),
    ]
    for _ in range(30):  # random byte mutations of valid JSON and msgpack requests
        src = bytearray(rng.choice([valid, msgspec.msgpack.encode(body())]))
        for _ in range(rng.randint(1, 6)):
            src[rng.randrange(len(src))] = rng.randrange(256)
        out.append((bytes(src), rng.choice([json_ct, mp_ct, [("content-type", None)], []])))
    return out


def control_corpus() -> list[tuple[bytes | None, Headers]]:
    cancel = json.dumps({"type": "cancel", "id": "nobody"}).encode()
    return [
        (cancel, [("content-type", None)]),
        (cancel, [("content-type", b"application/json"), ("content-type", None)]),
        (b"\xff\x00garbage", [("content-type", b"application/msgpack")]),
        (None, []),
        (b"q" * 1_200_000, [("content-type", b"application/json")]),
        (json.dumps({"type": "cancel", "id": "c" * 200_000}).encode(), [("content-type", b"application/json")]),
        (json.dumps({"type": "unknown"}).encode(), [("content-type", b"application/json")]),
    ]


async def test_worker_survives_any_bytes_and_every_record_gets_an_outcome(fuzz_fleet: FleetProcs) -> None:
    fleet = fuzz_fleet
    worker_pid = fleet.procs["worker"].pid
    topics = fleet.settings.kafka.topics
    reply = "wfuzz.replies.fuzz"
    rng = random.Random(9)
    big = AIOKafkaProducer(bootstrap_servers=fleet.settings.kafka.bootstrap, max_request_size=8 * 2**20, linger_ms=0)
    await big.start()
    try:
        async with RawPeer(fleet.settings, reply) as peer:
            for n, (value, headers) in enumerate(corpus(reply, rng)):
                await big.send_and_wait(topics.model(MODEL), value, key=str(n).encode(), headers=headers)
            for value, headers in control_corpus():
                await big.send_and_wait(topics.control, value, key=b"fuzz", headers=headers)
            rid = f"after-fuzz-{uuid.uuid4().hex[:6]}"
            ok = {"id": rid, "reply_to": reply, "prompt": "still there?", "model": MODEL, "max_tokens": 4}
            await peer.send(json.dumps(ok).encode(), topic=topics.model(MODEL))
            done = await peer.reply(rid, Done, timeout_s=60)
    finally:
        await big.stop()
    assert done.usage.completion_tokens == 4
    assert fleet.procs["worker"].poll() is None and fleet.procs["worker"].pid == worker_pid
    progress = await worker_group_progress(fleet.settings, MODEL, timeout_s=60, interval_s=0.5)  # '.' waits one
    if not all(end == committed for end, committed in progress):  # metadata timeout per try
        log = fleet.log("worker").splitlines()
        said = [ln[:300] for ln in log if '"debug"' not in ln][-60:]  # what the worker said, for a CI failure
        pytest.fail(f"uncommitted records: (end, committed) per partition {progress}\n" + "\n".join(said))


async def test_a_copy_of_a_running_request_on_another_partition_gets_its_own_outcome(fuzz_fleet: FleetProcs) -> None:
    """The same request bytes on both partitions, the second while the first runs and its progress record is
    in the worker's view: the copy must not take the live run over (the first record would then never reach
    an outcome and its partition would never commit again). Both end with `done`; every offset commits."""
    fleet = fuzz_fleet
    topic = fleet.settings.kafka.topics.model(MODEL)
    reply = "wfuzz.replies.copy"
    rid = f"copy-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"id": rid, "reply_to": reply, "prompt": "copy me", "model": MODEL, "max_tokens": 1000}).encode()
    async with RawPeer(fleet.settings, reply) as peer:
        await peer.send(body, key=b"0", topic=topic)  # key "0": partition 0
        await peer.wait_for(lambda e: isinstance(e, Chunk) and e.id == rid, "the first copy's first chunk")
        await asyncio.sleep(0.5)  # its progress record, durable before that chunk, is in the worker's view
        await peer.send(body, key=b"1", topic=topic)  # key "1": partition 1, while the first still runs
        await peer.wait_for(
            lambda _: len({e.run_id for e in peer.replies if isinstance(e, Done) and e.id == rid}) == 2,
            "a done for each copy, each its own run",
            timeout_s=60,
        )
    progress = await worker_group_progress(fleet.settings, MODEL, timeout_s=30, interval_s=0.5)
    assert all(end == committed for end, committed in progress), progress
