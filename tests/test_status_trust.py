"""Issue 23, items 2 and 8: a heartbeat is judged by when it arrived, not by the date it carries.

On real processes (a router, a simulated-engine worker for `sim`, no worker for `ghost`): one forged heartbeat
for `ghost` dated 50 s ahead no longer keeps it looking alive, so a request for it is refused at once instead
of waiting on a topic nobody reads (on the code before, it got no event at all). And against the broker: a
report with a slow clock is fresh, one dated far ahead is ignored, and unique forged ids cannot grow a reader
past its bound."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from contracts import Codec, Error, ErrorCode
from contracts.messages import WorkerStatus
from fleet import status as status_mod
from fleet.settings import load_settings
from fleet.status import StatusReader
from tests.fixtures_kafka import FleetProcs, started, write_config
from tests.kafka_helpers import RawPeer


def heartbeat(worker_id: str, model: str, ts_ms: float) -> bytes:
    return Codec().encode(
        WorkerStatus(worker_id=worker_id, model=model, ts_ms=int(ts_ms), running=0, waiting=0, capacity=64)
    )


@pytest.fixture(scope="module")
async def ghost_fleet(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FleetProcs]:
    d = tmp_path_factory.mktemp("ghostfleet")
    sim = {"name": "sim", "path": "none", "engine": "simulated", "simulated_tokens_per_s": 400.0}
    cfg = write_config(
        d / "fleet.toml",
        [sim, {**sim, "name": "ghost"}],
        prefix=f"gh{uuid.uuid4().hex[:4]}",
        extra="[router]\nbreaker_start_grace_ms = 1000\nbreaker_no_worker_ms = 1000\n",
    )
    async with started(cfg, broker, d, [("sim", "worker-sim")]) as fleet:
        yield fleet


@pytest.mark.system
async def test_a_heartbeat_dated_in_the_future_does_not_keep_a_dead_model_alive(ghost_fleet: FleetProcs) -> None:
    s = ghost_fleet.settings
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka.bootstrap)
    await producer.start()
    try:  # one forged report, 50 s ahead (inside the tolerance for drifting clocks, so it is read)
        await producer.send_and_wait(
            s.kafka.topics.status, heartbeat("ghost-forged-1", "ghost", time.time() * 1000 + 50_000)
        )
    finally:
        await producer.stop()
    # the router believes the report for one freshness window from its arrival (ghost's breaker closes: "first
    # live worker"), then ghost is dead again and its breaker opens; on the code before, a report dated 50 s ahead
    # kept it "live" for 50 s more, and every request in between went to a topic nobody reads, with no event
    deadline = time.monotonic() + 20
    while not ghost_reopened(ghost_fleet.log("router")):
        assert time.monotonic() < deadline, [ln for ln in ghost_fleet.log("router").splitlines() if "breaker" in ln]
        await asyncio.sleep(0.2)
    reply = f"{s.kafka.topic_prefix}.replies.ghost-{uuid.uuid4().hex[:6]}"
    async with RawPeer(s, reply) as peer:
        rid = f"g-{uuid.uuid4().hex[:6]}"
        body = f'{{"id": "{rid}", "reply_to": "{reply}", "prompt": "hi", "model": "ghost", "timeout_ms": 3000}}'
        await peer.send(body.encode())
        err = await peer.reply(rid, Error, timeout_s=15)
        assert err.code is ErrorCode.OVERLOADED and "no live worker" in err.message, err


def ghost_reopened(log: str) -> bool:
    """Whether ghost's breaker closed on the forged report and opened again after it."""
    events = [json.loads(ln) for ln in log.splitlines() if ln.startswith("{") and '"router.breaker"' in ln]
    ghost = [(e.get("new"), e.get("reason", "")) for e in events if e.get("model") == "ghost"]
    closed = next((i for i, (new, why) in enumerate(ghost) if new == "closed" and "first live worker" in why), None)
    return closed is not None and any(new == "open" for new, _ in ghost[closed + 1 :])


@pytest.mark.integration
async def test_reports_count_from_arrival_and_far_future_ones_are_ignored(
    broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = load_settings(None, env={"FLEET_KAFKA_BOOTSTRAP": broker, "FLEET_TOPIC_PREFIX": f"st{uuid.uuid4().hex[:6]}"})
    monkeypatch.setattr(status_mod, "MAX_WORKERS", 50)
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        async with StatusReader(s, from_start=False) as reader:
            deadline = time.monotonic() + 30
            while "probe" not in reader.latest:  # the reader is positioned: what is sent next reaches it
                await producer.send_and_wait(s.kafka.topics.status, heartbeat("probe", "m", time.time() * 1000))
                await reader.poll(timeout_ms=300)
                assert time.monotonic() < deadline
            now = time.time() * 1000
            await producer.send_and_wait(s.kafka.topics.status, heartbeat("slow-clock", "m", now - 120_000))
            await producer.send_and_wait(s.kafka.topics.status, heartbeat("far-future", "m", now + 3_600_000))
            await producer.send_and_wait(s.kafka.topics.status, heartbeat("x" * 500_000, "m", now))  # a huge id
            await producer.send_and_wait(s.kafka.topics.status, heartbeat("big-model", "m" * 1000, now))
            while "slow-clock" not in reader.latest or reader.ignored < 3:
                await reader.poll(timeout_ms=200)
                assert time.monotonic() < deadline
            # dated two minutes ago, but it arrived now: a worker with a slow clock is live
            assert {st.worker_id for st in reader.fresh(5_000)} == {"probe", "slow-clock"}
            assert "far-future" not in reader.latest  # an hour ahead: not believed at all
            assert reader.ignored == 3 and "big-model" not in reader.latest and "x" * 500_000 not in reader.latest
            for i in range(80):
                await producer.send_and_wait(s.kafka.topics.status, heartbeat(f"forged-{i}", "m", time.time() * 1000))
            while "forged-79" not in reader.latest:
                await reader.poll(timeout_ms=200)
                assert time.monotonic() < deadline
            assert len(reader.latest) == len(reader.heard_ms) == 50  # bounded: the least recently heard went
            assert "slow-clock" not in reader.latest and "forged-0" not in reader.latest
    finally:
        await producer.stop()


@pytest.mark.integration
async def test_a_worker_whose_heartbeats_slowed_stays_live_for_a_few_of_its_own_gaps(broker: str) -> None:
    """A worker slowed by a starved CPU reports every 4 s instead of every 0.3 s: it stays live for three of its
    own gaps (measured on its clock) after its last report, where a fixed window would have called it dead and
    opened its breaker; a worker that kept its cadence and went silent is dead after the fixed window, and no
    gap keeps anyone live past the cap."""
    s = load_settings(None, env={"FLEET_KAFKA_BOOTSTRAP": broker, "FLEET_TOPIC_PREFIX": f"st{uuid.uuid4().hex[:6]}"})
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        async with StatusReader(s, from_start=False) as reader:
            deadline = time.monotonic() + 30
            while "probe" not in reader.latest:
                await producer.send_and_wait(s.kafka.topics.status, heartbeat("probe", "m", time.time() * 1000))
                await reader.poll(timeout_ms=300)
                assert time.monotonic() < deadline
            t0 = int(time.time() * 1000)
            for k in range(3):  # its own clock: 4 s apart (sent now: what counts is the gap it reports)
                await producer.send_and_wait(s.kafka.topics.status, heartbeat("slowed", "m", t0 + 4_000 * k))
            for k in range(3):
                await producer.send_and_wait(s.kafka.topics.status, heartbeat("steady", "m", t0 + 300 * k))
            await producer.send_and_wait(s.kafka.topics.status, heartbeat("leaping", "m", t0))
            await producer.send_and_wait(
                s.kafka.topics.status, heartbeat("leaping", "m", t0 + 59_000)
            )  # within the future tolerance
            last = {"slowed": t0 + 8_000, "steady": t0 + 600, "leaping": t0 + 59_000}
            while any(w not in reader.latest or reader.latest[w].ts_ms != ts for w, ts in last.items()):
                await reader.poll(timeout_ms=200)
                assert time.monotonic() < deadline
            heard = max(reader.heard_ms[w] for w in ("slowed", "steady"))

            def live(after_ms: float) -> set[str]:
                return {st.worker_id for st in reader.fresh(1_900, now_ms=heard + after_ms)} - {"probe"}

            assert live(1_000) == {"slowed", "steady", "leaping"}
            assert live(5_000) == {"slowed", "leaping"}  # steady went silent: dead after the fixed window
            assert live(11_000) == {"slowed", "leaping"}  # three of slowed's 4 s gaps
            assert live(13_000) == {"leaping"}
            assert live(status_mod.MAX_LIVE_WINDOW_MS + 1_000) == set()  # a forged leap keeps nobody live longer
    finally:
        await producer.stop()
