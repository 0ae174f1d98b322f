"""Issue 9, worker side, on real processes: a Tansu broker, the router and a simulated-engine worker
(timed token emission, no model). Requests go straight to the model topic, as a peer that bypasses
the router would send them, so each test exercises the worker's own handling.

The broker runs with a schema registry: Tansu validates records for a topic that has a schema and
refuses the others with a non-retriable error after `send()` returned, as a real Kafka refuses a
producer without write permission on the topic. That topic is the unwritable `reply_to`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.codec import Codec
from contracts.messages import Chunk, Done, Error, ErrorCode, UsageRecord
from contracts.topics import Headers
from fleet.broker import broker_binary, free_port, port_is_open
from fleet.runtime import die_with_parent
from tests.fixtures_kafka import FleetProcs, started, write_config
from tests.kafka_helpers import RawPeer, header, worker_group_progress

pytestmark = pytest.mark.slow

PREFIX = "wfault"
MODEL = "sim"
LOCKED = f"{PREFIX}.replies.locked"  # the schema below refuses every reply event written there
REPLIES = f"{PREFIX}.replies.faults"
MARKER = "POISON-PILL"
_SCHEMA = {"type": "object", "properties": {"value": {"type": "object", "required": ["never-present"]}}}


def _schema_broker(d: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Tansu broker whose schema registry (d/schema) holds the schema that locks LOCKED."""
    (d / "schema").mkdir()
    (d / "schema" / f"{LOCKED}.json").write_text(json.dumps(_SCHEMA))
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    args = ["--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    with open(d / "broker.log", "ab") as out:
        broker = subprocess.Popen(
            [broker_binary(), "broker", *args, "--schema-registry", "file://./schema"],
            cwd=d,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    deadline = time.monotonic() + 20
    while not port_is_open("127.0.0.1", port):
        assert time.monotonic() < deadline, "broker did not start"
        time.sleep(0.1)
    return broker, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
async def fault_fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FleetProcs]:
    d = tmp_path_factory.mktemp("wfault")
    broker, bootstrap = _schema_broker(d)
    try:
        cfg = write_config(
            d / "fleet.toml",
            [
                {
                    "name": MODEL,
                    "path": "none",
                    "engine": "simulated",
                    "simulated_tokens_per_s": 200.0,
                    "simulated_fail_marker": MARKER,
                    "max_running": 8,
                }
            ],
            prefix=PREFIX,
            partitions=1,  # one partition: a stuck offset would hold every later request's commit
            extra="[worker]\nmetadata_attempts = 1\nmax_attempts = 2\nengine_watchdog_s = 2.0",
        )
        async with started(cfg, bootstrap, d, [(MODEL, "worker")]) as fleet:
            yield fleet
    finally:
        broker.kill()
        broker.wait()


def _request(rid: str, reply_to: str = REPLIES, **fields: object) -> bytes:
    body: dict[str, object] = {"id": rid, "reply_to": reply_to, "prompt": "hello there", "model": MODEL}
    body.update(max_tokens=8)
    body.update(fields)
    return json.dumps(body).encode()


def _model_topic(fleet: FleetProcs) -> str:
    return fleet.settings.kafka.topics.model(MODEL)


async def test_unwritable_reply_to_is_recorded_and_commits_move_on(fault_fleet: FleetProcs) -> None:
    """Finding 3: the broker refuses the terminal event after send() returned. Before the fix the offset
    never finished and the worker committed nothing past it, forever."""
    fleet = fault_fleet
    async with RawPeer(fleet.settings, REPLIES) as peer:
        bad = f"locked-{uuid.uuid4().hex[:6]}"
        await peer.send(_request(bad, reply_to=LOCKED), topic=_model_topic(fleet))
        good = [f"after-locked-{k}-{uuid.uuid4().hex[:6]}" for k in range(3)]
        for rid in good:
            await peer.send(_request(rid), topic=_model_topic(fleet))
        for rid in good:
            await peer.reply(rid, Done, timeout_s=30)
    ((end, committed),) = await worker_group_progress(fleet.settings, MODEL, timeout_s=15)
    assert committed == end, f"the worker's commits stopped at {committed} (log end {end})"
    log = fleet.log("worker")
    assert '"worker.undeliverable"' in log and LOCKED in log
    assert fleet.procs["worker"].poll() is None


async def test_missing_reply_topic_stalls_nothing_else(fault_fleet: FleetProcs) -> None:
    """Finding 8: a reply_to the broker does not know ('.' is a legal-looking name Kafka and Tansu refuse)
    made every event wait ~15 s for metadata on the engine loop; nothing else was answered meanwhile."""
    fleet = fault_fleet
    async with RawPeer(fleet.settings, REPLIES) as peer:
        await peer.send(
            _request(f"nowhere-{uuid.uuid4().hex[:6]}", reply_to=".", max_tokens=40), topic=_model_topic(fleet)
        )
        await asyncio.sleep(0.3)  # the bad one is generating: its events queue for the missing topic
        rid = f"beside-nowhere-{uuid.uuid4().hex[:6]}"
        t0 = time.monotonic()
        await peer.send(_request(rid), topic=_model_topic(fleet))
        await peer.reply(rid, Done, timeout_s=30)
        waited = time.monotonic() - t0
    assert waited < 5, f"a good request waited {waited:.1f} s behind a missing reply topic"
    # one metadata wait (15 s), then recorded
    ((end, committed),) = await worker_group_progress(fleet.settings, MODEL, timeout_s=40)
    assert committed == end
    assert '"worker.undeliverable"' in fleet.log("worker")


async def test_admission_failure_is_the_record_outcome_not_the_end_of_intake(fault_fleet: FleetProcs) -> None:
    """Finding 5: an over-long prompt's DLQ copy (value plus headers) went over the producer's 1 MiB limit;
    send() raised in admission and ended the intake task while the worker kept its partition and looked
    healthy. Now the copy is cut to fit (noted in a header) and the next request is answered."""
    fleet = fault_fleet
    rid = f"huge-{uuid.uuid4().hex[:6]}"
    value = _request(rid, prompt="x" * 1_048_576)  # over the producer's 1 MiB limit by itself
    async with RawPeer(fleet.settings, REPLIES) as peer:
        await peer.producer.stop()
        from aiokafka import AIOKafkaProducer

        peer.producer = AIOKafkaProducer(
            bootstrap_servers=fleet.settings.kafka.bootstrap, linger_ms=0, max_request_size=4 * 2**20
        )
        await peer.producer.start()
        await peer.send(value, topic=_model_topic(fleet))
        err = await peer.reply(rid, Error, timeout_s=30)
        assert err.code in (ErrorCode.PROMPT_TOO_LONG, ErrorCode.INVALID_REQUEST)
        copy = await peer.wait_for(
            lambda r: (
                not isinstance(r, Chunk | Done | Error)
                and header(r, "fleet-source-topic") == _model_topic(fleet)
                and header(r, Headers.DLQ_TRUNCATED) == str(len(value))
            ),
            "a truncated DLQ copy",
        )
        assert len(copy.value) < len(value)
        after = f"after-huge-{uuid.uuid4().hex[:6]}"
        await peer.send(_request(after), topic=_model_topic(fleet))
        await peer.reply(after, Done, timeout_s=30)
    assert fleet.procs["worker"].poll() is None


async def test_control_survives_a_null_content_type_and_garbage(fault_fleet: FleetProcs) -> None:
    """Finding 5: one control record with a null content-type header ended the control task, and with it
    cancellation, silently."""
    fleet = fault_fleet
    control = fleet.settings.kafka.topics.control
    async with RawPeer(fleet.settings, REPLIES) as peer:
        await peer.producer.send_and_wait(control, b'{"type": "cancel", "id": "x"}', headers=[("content-type", None)])
        await peer.producer.send_and_wait(
            control, b"\xff\x00garbage", headers=[("content-type", b"application/msgpack")]
        )
        await asyncio.sleep(0.5)
        rid = f"to-cancel-{uuid.uuid4().hex[:6]}"
        await peer.send(_request(rid, max_tokens=2000), topic=_model_topic(fleet))
        await peer.reply(rid, Chunk, timeout_s=30)
        await peer.send(json.dumps({"type": "cancel", "id": rid}).encode(), topic=control)
        err = await peer.reply(rid, Error, timeout_s=5)
    assert err.code is ErrorCode.CANCELLED


async def test_a_resent_finished_id_gets_the_same_answer(fault_fleet: FleetProcs) -> None:
    """Item 11: a re-send of an id whose run finished on this worker is answered with that run's
    terminal event (not a second generation)."""
    fleet = fault_fleet
    rid = f"resent-{uuid.uuid4().hex[:6]}"
    async with RawPeer(fleet.settings, REPLIES) as peer:
        await peer.send(_request(rid), topic=_model_topic(fleet))
        first = await peer.reply(rid, Done, timeout_s=30)
        await peer.send(_request(rid), topic=_model_topic(fleet))
        second = await peer.wait_for(
            lambda e: isinstance(e, Done) and e.id == rid and e is not first, "a second done", timeout_s=10
        )
    assert second.run_id == first.run_id and second.text == first.text


async def test_one_failing_request_is_isolated_and_its_batchmates_go_free(fault_fleet: FleetProcs) -> None:
    """Finding 7: a step that raises because of one request used to charge every request held; 4 of 8
    innocent ones ended as `poison`. The step's requests are bisected until the culprit fails alone."""
    fleet = fault_fleet
    async with RawPeer(fleet.settings, REPLIES) as peer:
        tag = uuid.uuid4().hex[:6]
        bad = f"pill-{tag}"
        innocent = [f"mate-{k}-{tag}" for k in range(7)]
        for k, rid in enumerate(innocent):
            if k == 3:
                await peer.send(_request(bad, prompt=f"a {MARKER} inside", max_tokens=30), topic=_model_topic(fleet))
            await peer.send(_request(rid, max_tokens=30), topic=_model_topic(fleet))
        for rid in innocent:
            await peer.reply(rid, Done, timeout_s=60)
        err = await peer.reply(bad, Error, timeout_s=60)
        poisoned = [e for e in peer.replies if isinstance(e, Error) and e.code is ErrorCode.POISON and tag in e.id]
    assert err.code is ErrorCode.POISON
    assert [e.id for e in poisoned] == [bad]


async def test_usage_for_every_run_that_used_tokens(fault_fleet: FleetProcs) -> None:
    """Item 11: usage records for cancelled runs too (not only `done`), each carrying its run id."""
    fleet = fault_fleet
    usage_topic = fleet.settings.kafka.topics.usage
    reader = AIOKafkaConsumer(bootstrap_servers=fleet.settings.kafka.bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        reader.assign([TopicPartition(usage_topic, 0)])
        await reader.seek_to_end(TopicPartition(usage_topic, 0))
        async with RawPeer(fleet.settings, REPLIES) as peer:
            rid = f"usage-cancel-{uuid.uuid4().hex[:6]}"
            await peer.send(_request(rid, max_tokens=2000), topic=_model_topic(fleet))
            await peer.reply(rid, Chunk, timeout_s=30)
            await asyncio.sleep(0.3)
            await peer.send(
                json.dumps({"type": "cancel", "id": rid}).encode(), topic=fleet.settings.kafka.topics.control
            )
            await peer.reply(rid, Error, timeout_s=10)
        seen: list[UsageRecord] = []
        t0 = time.monotonic()
        while not seen and time.monotonic() - t0 < 10:
            for records in (await reader.getmany(timeout_ms=200)).values():
                for r in records:
                    rec = Codec().decode_usage(r.value)
                    if rec.id == rid:
                        seen.append(rec)
    finally:
        await reader.stop()
    assert len(seen) == 1 and seen[0].finish == "cancelled" and seen[0].completion_tokens > 0 and seen[0].run_id


async def test_the_watchdog_leaves_a_worker_that_was_idle_alone(fault_fleet: FleetProcs) -> None:
    """Finding 9's watchdog (2 s here) counts from when an idle engine gets work, not from the start of
    the idle spell: a request after a longer idle spell is served by the same worker."""
    fleet = fault_fleet
    pid = fleet.procs["worker"].pid
    await asyncio.sleep(3.0)
    async with RawPeer(fleet.settings, REPLIES) as peer:
        rid = f"after-idle-{uuid.uuid4().hex[:6]}"
        await peer.send(_request(rid, max_tokens=200), topic=_model_topic(fleet))
        await peer.reply(rid, Done, timeout_s=30)
    assert fleet.procs["worker"].poll() is None and fleet.procs["worker"].pid == pid
    assert '"worker.engine_stalled"' not in fleet.log("worker")
