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
from fleet.kafka import ensure_topics
from fleet.settings import Settings, load_settings
from fleet.status import StatusReader, wait_for_workers
from tests.fixtures_kafka import FleetProcs, started, write_config
from tests.kafka_helpers import RawPeer


def heartbeat(worker_id: str, model: str, ts_ms: float) -> bytes:
    return Codec().encode(
        WorkerStatus(worker_id=worker_id, model=model, ts_ms=int(ts_ms), running=0, waiting=0, capacity=64)
    )


async def status_topic(broker: str) -> Settings:
    """Settings with a fresh prefix whose status topic exists with one partition, as the fleet creates it (an
    auto-created one can have several, and the probe that shows a reader from now is placed shows it for the probe's
    partition only: a report on another was once missed, and the test waiting for it timed out)."""
    s = load_settings(None, env={"FLEET_KAFKA_BOOTSTRAP": broker, "FLEET_TOPIC_PREFIX": f"st{uuid.uuid4().hex[:6]}"})
    await ensure_topics(s, {s.kafka.topics.status: 1})
    return s


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
    s = await status_topic(broker)
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
    """A worker slowed by a starved CPU reports every second instead of every 0.3 s (the stimulus: its reports are
    sent 1 s apart, dated so): it stays live for three of its gaps after its last report, where the fixed window
    would have called it dead and opened its breaker. A gap counts as both clocks saw it, so a report dated ahead
    (forged) widens nothing, and a worker that kept its cadence and went silent is dead after the fixed window."""
    s = await status_topic(broker)
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        async with StatusReader(s, from_start=False) as reader:
            deadline = time.monotonic() + 30
            while "probe" not in reader.latest:
                await producer.send_and_wait(s.kafka.topics.status, heartbeat("probe", "m", time.time() * 1000))
                await reader.poll(timeout_ms=300)
                assert time.monotonic() < deadline
            for k in range(3):
                now = time.time() * 1000
                await producer.send_and_wait(s.kafka.topics.status, heartbeat("slowed", "m", now))
                await producer.send_and_wait(s.kafka.topics.status, heartbeat("leaping", "m", now + 50_000 * k))
                while reader.latest.get("slowed") is None or reader.latest["slowed"].ts_ms != int(now):
                    await reader.poll(timeout_ms=200)  # each arrives about when it was sent
                    assert time.monotonic() < deadline
                if k < 2:
                    await asyncio.sleep(1.0)  # the slowed worker's cadence
            for _ in range(4):  # steady keeps a 0.3 s cadence, then goes silent
                await asyncio.sleep(0.3)
                await producer.send_and_wait(s.kafka.topics.status, heartbeat("steady", "m", time.time() * 1000))
            while "steady" not in reader.latest or time.time() * 1000 - reader.latest["steady"].ts_ms > 500:
                await reader.poll(timeout_ms=200)
                assert time.monotonic() < deadline
            await reader.poll(timeout_ms=200)
            slowed = reader.heard_ms["slowed"]
            assert reader.gap_ms["slowed"] >= 700 and reader.gap_ms.get("leaping", 0.0) < 700

            def live(after_ms: float) -> set[str]:
                return {st.worker_id for st in reader.fresh(1_900, now_ms=slowed + after_ms)} - {"probe"}

            assert "slowed" in live(2_500) and "leaping" not in live(2_500)  # the fixed window alone: dead
            assert "slowed" not in live(3 * reader.gap_ms["slowed"] + 100)
            assert "steady" not in live(reader.heard_ms["steady"] - slowed + 2_000)  # silent past the window
    finally:
        await producer.stop()


@pytest.mark.integration
async def test_a_reader_from_now_replays_the_recent_reports_as_replayed(broker: str) -> None:
    """A router that starts (or restarts) just after a worker's report knows the worker at once: its reader from now
    also reads the `recent` last reports already on the topic, each counted from the earlier of its arrival and its
    date, so a report dated two minutes ago is not fresh and one from before the last `recent` is not read at all.
    A reader from now without `recent` sees none of them (the CI run that caught it: the router refused the first
    request `overloaded`, having missed the only report sent before its reader was placed)."""
    s = await status_topic(broker)
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        now = time.time() * 1000
        await producer.send_and_wait(s.kafka.topics.status, heartbeat("too-early", "m", now))  # beyond `recent`
        await producer.send_and_wait(s.kafka.topics.status, heartbeat("dead-long-ago", "m", now - 120_000))
        for i in range(3):
            await producer.send_and_wait(s.kafka.topics.status, heartbeat(f"live-{i}", "m", now))
        async with (
            StatusReader(s, from_start=False, recent=4) as recent,
            StatusReader(s, from_start=False) as plain,
        ):
            deadline = time.monotonic() + 30
            while "live-2" not in recent.latest:
                await recent.poll(timeout_ms=200)
                assert time.monotonic() < deadline
            assert {st.worker_id for st in recent.fresh(5_000)} == {"live-0", "live-1", "live-2"}
            assert "dead-long-ago" in recent.latest and "too-early" not in recent.latest
            while "after" not in plain.latest:  # the plain reader is placed: it reads what is sent from now on
                await producer.send_and_wait(s.kafka.topics.status, heartbeat("after", "m", time.time() * 1000))
                await plain.poll(timeout_ms=300)
                assert time.monotonic() < deadline
            assert set(plain.latest) == {"after"}
            while "after" not in recent.latest:  # and what arrives after placing counts from its arrival
                await recent.poll(timeout_ms=200)
                assert time.monotonic() < deadline
            assert recent.heard_ms["after"] >= recent.heard_ms["live-0"]
    finally:
        await producer.stop()


@pytest.mark.integration
async def test_a_last_runs_reports_do_not_make_workers_ready_now(broker: str) -> None:
    """A journaled broker keeps the last run's status reports: `fleet up` waits for reports heard lately
    (`within_ms`), so a worker that reported minutes ago is not ready now (it sent its smoke request at once on
    those, and the first token took 20 s while the workers still loaded). Replayed, a report counts from its date."""
    s = await status_topic(broker)
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        await producer.send_and_wait(s.kafka.topics.status, heartbeat("last-run", "m", time.time() * 1000 - 600_000))
    finally:
        await producer.stop()
    assert "m" in await wait_for_workers(s, ["m"], timeout_s=10)  # any report ever: the old behaviour
    assert await wait_for_workers(s, ["m"], timeout_s=2, within_ms=4_000) == {}


@pytest.mark.integration
async def test_a_reader_whose_placing_fails_places_on_a_later_poll(broker: str) -> None:
    """The end-offset request that places a `recent` reader fails (the broker does not answer): the poll neither
    raises nor skips the replay; the next poll places the partition and the reports already there are read."""
    from aiokafka.errors import KafkaConnectionError

    s = await status_topic(broker)
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        await producer.send_and_wait(s.kafka.topics.status, heartbeat("before", "m", time.time() * 1000))
    finally:
        await producer.stop()
    async with StatusReader(s, from_start=False, recent=8) as reader:
        real, failures = reader._consumer.end_offsets, []

        async def failing(partitions: list[object]) -> object:
            if not failures:
                failures.append(partitions)
                raise KafkaConnectionError("broker gone")
            return await real(partitions)  # type: ignore[arg-type]

        reader._consumer.end_offsets = failing  # type: ignore[method-assign]
        deadline = time.monotonic() + 30
        while "before" not in reader.latest:
            await reader.poll(timeout_ms=200)
            assert time.monotonic() < deadline
        assert failures and "before" in {st.worker_id for st in reader.fresh(5_000)}
