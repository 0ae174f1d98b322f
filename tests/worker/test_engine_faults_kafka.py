"""Issue 9, findings 7 and 9, on real processes with a real (tiny, random-init) HF checkpoint: one
request's sampling parameters must not poison its batchmates, and a hung engine process must not be
a silent black hole (the worker answers deadlines itself, then exits non-zero so Kafka hands its
work to another worker)."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts.messages import Done, Error, ErrorCode
from tests.fixtures_kafka import FleetProcs, started, write_config
from tests.kafka_helpers import RawPeer, first_status, status_pid
from tests.worker.test_engine_process_kafka import _engine_processes

pytestmark = pytest.mark.slow


def _request(rid: str, reply_to: str, **fields: object) -> bytes:
    body: dict[str, object] = {"id": rid, "reply_to": reply_to, "prompt": "def add(a, b):", "model": "m"}
    body.update(max_tokens=12, temperature=0.8, seed=7)
    body.update(fields)
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
async def one_partition_pair(
    broker: str, tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path
) -> AsyncIterator[FleetProcs]:
    """Two workers of one model on a one-partition topic: one serves, the other waits to take over.
    Shared by this module's tests (one fleet start, not two): the hung-engine test, which stops an engine
    and ends a worker, comes last in the file."""
    tmp_path = tmp_path_factory.mktemp("enfault")
    cfg = write_config(
        tmp_path / "fleet.toml",
        [{"name": "m", "path": str(tiny_checkpoint), "max_running": 8}],
        prefix=f"enfault{uuid.uuid4().hex[:4]}",
        partitions=1,
        extra="[worker]\nengine_watchdog_s = 8.0\ndeadline_grace_ms = 300",
    )
    async with started(cfg, broker, tmp_path, [("m", "w1"), ("m", "w2")]) as fleet:
        yield fleet


async def test_a_tiny_temperature_does_not_poison_its_batchmates(one_partition_pair: FleetProcs) -> None:
    """Finding 7: temperature 1e-40 passed validation and made the whole step raise (NaN probabilities);
    every request held was charged an attempt and innocent ones ended as `poison`."""
    fleet = one_partition_pair
    topic = fleet.settings.kafka.topics.model("m")
    reply = f"{fleet.settings.kafka.topic_prefix}.replies.temp"
    async with RawPeer(fleet.settings, reply) as peer:
        tag = uuid.uuid4().hex[:6]
        ids = [f"t-{k}-{tag}" for k in range(8)]
        for k, rid in enumerate(ids):
            extra = {"temperature": 1e-40} if k == 3 else {}
            await peer.send(_request(rid, reply, **extra), topic=topic)
        ends = [
            await peer.wait_for(
                lambda e, rid=rid: isinstance(e, Done | Error) and e.id == rid, f"the end of {rid}", timeout_s=120
            )
            for rid in ids
        ]
    innocent = [e for k, e in enumerate(ends) if k != 3]
    assert all(isinstance(e, Done) for e in innocent), innocent
    culprit = ends[3]  # served greedily, or refused up front once validation bounds the temperature
    assert isinstance(culprit, Done) or culprit.code is ErrorCode.INVALID_REQUEST, culprit


async def test_a_hung_engine_expires_deadlines_and_hands_the_rest_over(one_partition_pair: FleetProcs) -> None:
    """Finding 9: with the engine process stopped (SIGSTOP), requests with an 8 s deadline got no event
    for 48 s and health said ready. Now the worker answers `expired` itself past the deadline, its
    watchdog ends it non-zero, and the request without a deadline is finished by the other worker."""
    fleet = one_partition_pair
    topic = fleet.settings.kafka.topics.model("m")
    reply = f"{fleet.settings.kafka.topic_prefix}.replies.hung"
    async with RawPeer(fleet.settings, reply) as peer:
        tag = uuid.uuid4().hex[:6]
        with_deadline, without = f"dl-{tag}", f"nodl-{tag}"
        st = await first_status(fleet.settings, lambda s: s.model == "m" and s.state == "serving")
        await peer.send(_request(f"warm-{tag}", reply), topic=topic)
        await peer.reply(f"warm-{tag}", Done, timeout_s=60)
        st = await first_status(fleet.settings, lambda s: s.model == "m" and s.uncommitted == 0)
        # the serving worker is the one that reported work; find it by a request that runs a while
        await peer.send(_request(without, reply, max_tokens=1500), topic=topic)
        st = await first_status(fleet.settings, lambda s: s.model == "m" and s.running > 0, timeout_s=60)
        worker_pid = status_pid(st)
        (engine_pid,) = _engine_processes(worker_pid)
        os.kill(engine_pid, signal.SIGSTOP)
        t0 = time.monotonic()
        deadline_ms = int(time.time() * 1000) + 3000
        await peer.send(_request(with_deadline, reply, deadline_ms=deadline_ms, max_tokens=1500), topic=topic)
        expired = await peer.reply(with_deadline, Error, timeout_s=20)
        answered_after = time.monotonic() - t0
        name = next(n for n, p in fleet.procs.items() if p.pid == worker_pid)
        code = fleet.wait(name, timeout_s=60)
        done = await peer.reply(without, Done, timeout_s=120)
    assert expired.code is ErrorCode.EXPIRED and answered_after < 6, answered_after
    assert code != 0, "a worker whose engine hung must exit non-zero"
    assert '"worker.engine_stalled"' in fleet.log(name)
    assert done.usage.completion_tokens > 0
