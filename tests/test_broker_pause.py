"""Issue 9, finding 1: pausing the broker (SIGSTOP) for 30 s under a backlog of 3,000 requests lost 396 of
them while the router committed all 3,000. Simulated engine (timed token emission, no model).

The pause must land while the ROUTER holds the backlog (sends in flight, records prefetched but not yet
forwarded): the whole backlog is produced to the intake before the router starts, and the broker is stopped
once the router has forwarded a few hundred of them (watched on the model topic's end offsets). A pause
after the router forwarded everything would only test the worker and the client.

Self-contained on purpose (only helpers that existed before issue 9), so the same file runs against the
pre-issue-9 tree to show that it fails there."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts import Done, Request
from fleet.broker import EmbeddedBroker, free_port
from fleet.client import FleetClient, RequestFailed
from fleet.kafka import connection_kwargs, ensure_topics, fleet_topics, make_consumer
from fleet.settings import Settings
from tests.fixtures_kafka import FleetProcs, wait_ready, write_config

pytestmark = pytest.mark.slow

N = 3_000
PAUSE_AFTER = 300  # forwarded records seen on the model topic before the broker is stopped
PAUSE_S = 30
STALL_S = 90  # after the pause, no new answer for this long: the rest are lost


async def _forwarded(ends: AIOKafkaConsumer, tps: list[TopicPartition]) -> int:
    offsets = await ends.end_offsets(tps)
    return int(sum(offsets.values()))


async def _log_end(s: Settings, topic: str) -> dict[int, int]:
    """Each partition's log end (last offset + 1), by reading it: the dev broker's ListOffsets answers the
    last batch's base offset + 1, short of the end when a producer batched several records."""
    c = make_consumer(s, group_id=None)
    await c.start()
    try:
        await c.topics()
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        end = {tp.partition: 0 for tp in tps}
        while batch := await c.getmany(timeout_ms=2000):
            for tp, records in batch.items():
                end[tp.partition] = records[-1].offset + 1
        return end
    finally:
        await c.stop()


@pytest.mark.timeout(900)
async def test_a_broker_pause_under_backlog_loses_nothing_and_answers_nothing_twice(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    d = tmp_path_factory.mktemp("pause")
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    cfg = write_config(
        d / "fleet.toml",
        [{"name": "sim", "path": "none", "engine": "simulated", "simulated_tokens_per_s": 2000.0, "max_inflight": 64}],
        prefix="pause",
        extra="[router]\noverload_max_backlog = 100000",
    )
    fleet = FleetProcs(cfg, broker.bootstrap, d)
    s = fleet.settings
    model_topic = s.kafka.topics.model("sim")
    ends = make_consumer(s, group_id=None)
    try:
        await ensure_topics(s, fleet_topics(s))
        fleet.start_worker("sim")  # no router yet: the whole backlog waits in the intake
        await wait_ready(fleet, ["sim"])
        await ends.start()
        model_tps = [TopicPartition(model_topic, p) for p in range(s.kafka.model_partitions)]
        async with FleetClient(s, default_timeout_s=900) as c:
            terminal: dict[str, list[str]] = {}
            reqs = [c.build_request(f"p{i}", model="sim", max_tokens=2, timeout_s=900) for i in range(N)]
            for r in reqs:
                terminal[r.id] = []
            answered_at: list[float] = []

            async def one(r: Request) -> str:
                try:
                    async for ev in c.stream_request(r):
                        if isinstance(ev, Done):
                            terminal[ev.id].append("done")
                    outcome = "done"
                except RequestFailed as exc:
                    terminal[exc.event.id].append(exc.code.value)
                    outcome = exc.code.value
                answered_at.append(time.monotonic())
                return outcome

            sent = 0
            plain_send = c.send

            async def counted_send(r: Request) -> None:
                nonlocal sent
                await plain_send(r)
                sent += 1

            c.send = counted_send  # type: ignore[method-assign,assignment]
            tasks = [asyncio.create_task(one(r)) for r in reqs]
            t_send = time.monotonic()
            while sent < N:
                await asyncio.sleep(0.05)
                assert time.monotonic() - t_send < 300, f"only {sent} of {N} requests sent in 300 s"
            print(f"{N} requests in the intake in {time.monotonic() - t_send:.1f} s")
            assert await _forwarded(ends, model_tps) == 0

            fleet.start_router()
            t_start = time.monotonic()
            while (forwarded := await _forwarded(ends, model_tps)) < PAUSE_AFTER:
                assert fleet.procs["router"].poll() is None, fleet.log("router")[-3000:]
                assert time.monotonic() - t_start < 180, "the router never started forwarding"
                await asyncio.sleep(0.01)
            pid = broker.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            t0 = time.monotonic()
            # the pause landed while the router still held most of the backlog
            assert forwarded < N // 2, f"router had forwarded {forwarded} of {N} before the pause"
            print(f"broker stopped with {forwarded} of {N} forwarded, {len(answered_at)} answered")
            await asyncio.sleep(PAUSE_S)
            os.kill(pid, signal.SIGCONT)
            last = time.monotonic()
            while not all(t.done() for t in tasks):
                await asyncio.sleep(1.0)
                if answered_at and answered_at[-1] > last:
                    last = answered_at[-1]
                if time.monotonic() - last > STALL_S or time.monotonic() - t0 > 600:
                    break
            for t in tasks:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            outcomes = [r for r in results if isinstance(r, str)]
            print(f"{len(outcomes)} of {N} answered {time.monotonic() - t0:.1f} s after the pause began")
        lost = [rid for rid, evs in terminal.items() if not evs]
        twice = [rid for rid, evs in terminal.items() if len(evs) > 1]
        assert not lost and not twice, f"lost {len(lost)}, answered twice {len(twice)} of {N}"
        # every request served, or refused `overloaded` (typed, retriable): right after the pause the router's
        # drain-rate estimate is near zero, so some of the backlog behind it is refused rather than queued
        assert len(outcomes) == N and set(outcomes) <= {"done", "overloaded"}, {
            o: outcomes.count(o) for o in set(outcomes)
        }
        assert all(p.poll() is None for p in fleet.procs.values()), {n: p.poll() for n, p in fleet.procs.items()}
        # every intake record reached its outcome and the router's commits say so
        admin = AIOKafkaAdminClient(**connection_kwargs(s))
        await admin.start()
        try:
            end = await _log_end(s, s.kafka.topics.requests)
            assert sum(end.values()) == N
            deadline = time.monotonic() + 60
            while True:
                tps = [TopicPartition(s.kafka.topics.requests, p) for p in end]
                committed = await admin.list_consumer_group_offsets(s.kafka.topics.router_group, partitions=tps)
                done = {tp.partition: committed[tp].offset for tp in tps if tp in committed}
                if done == end:
                    break
                assert time.monotonic() < deadline, f"intake not committed to the end: {done} != {end}"
                await asyncio.sleep(0.5)
        finally:
            await admin.close()
    finally:
        await ends.stop()
        fleet.stop_all()
        await broker.stop()
