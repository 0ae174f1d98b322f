"""Delivery guarantees on real processes: SIGKILL, SIGTERM, router restart, a worker joining.

Every request must get exactly one terminal `done` through the client library, with the greedy
text of a clean run: nothing lost (a killed worker committed nothing past unfinished work, so its
partitions' requests are redone by the other worker) and nothing doubled (the client presents a
restarted generation once).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from fleet.client import FleetClient, GenerationResult
from fleet.kafka import connection_kwargs, make_consumer
from tests.fixtures_kafka import FleetProcs, groups_settled, started, worker_partitions, write_config
from tests.kafka_helpers import first_status, resumed_ids, status_pid

pytestmark = pytest.mark.slow

PROMPTS = [f"def func_{i}(x):\n    return x {op} {i}" for i, op in enumerate("+-*/%" * 6)]


@pytest.fixture
async def chaos_fleet(
    broker: str, tmp_path_factory: pytest.TempPathFactory, tiny_pair: object
) -> AsyncIterator[FleetProcs]:
    d = tmp_path_factory.mktemp("chaos")
    cfg = write_config(
        d / "fleet.toml",
        [
            {"name": "large", "path": str(tiny_pair.target), "max_inflight": 24},  # type: ignore[attr-defined]
        ],
        prefix=f"chaos{int(time.time()) % 100000}",
        partitions=4,
    )
    async with started(cfg, broker, d, [("large", "w1"), ("large", "w2")]) as fleet:
        yield fleet


async def committed_vs_log_end(fleet: FleetProcs, model: str) -> tuple[dict[int, int], dict[int, int]]:
    """Committed offsets of the model's worker group, and one past the last record of each partition
    (read from the log itself: the dev broker's ListOffsets can under-report the end under load)."""
    s = fleet.settings
    topic = s.kafka.topics.model(model)
    parts = [TopicPartition(topic, p) for p in range(s.kafka.model_partitions)]
    c = make_consumer(s, group_id=None, auto_offset_reset="earliest")
    admin = AIOKafkaAdminClient(**connection_kwargs(s))
    await c.start()
    await admin.start()
    try:
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        log_end = {tp.partition: 0 for tp in parts}
        quiet = 0
        while quiet < 5:
            batch = await c.getmany(timeout_ms=200)
            quiet = 0 if batch else quiet + 1
            for tp, recs in batch.items():
                log_end[tp.partition] = max(log_end[tp.partition], recs[-1].offset + 1)
        com = await admin.list_consumer_group_offsets(s.kafka.topics.worker_group(model), partitions=parts)
        return {tp.partition: max(0, com[tp].offset) if tp in com else 0 for tp in parts}, log_end
    finally:
        await c.stop()
        await admin.close()


async def busy(fleet: FleetProcs, name: str, timeout_s: float = 30) -> None:
    """Until the worker process `name` reports requests running."""
    pid = fleet.procs[name].pid
    try:
        await first_status(fleet.settings, lambda st: status_pid(st) == pid and st.running > 0, timeout_s=timeout_s)
    except TimeoutError:
        raise AssertionError(f"{name} never reported running requests") from None


async def test_chaos_kill_term_router_restart(chaos_fleet: FleetProcs) -> None:
    fleet = chaos_fleet
    n = 300
    async with FleetClient(fleet.settings) as c:
        reference = {}
        for p in PROMPTS:  # clean single runs, one at a time
            reference[p] = (await c.generate(p, model="large", max_tokens=96, timeout_s=60)).text
        results: dict[str, GenerationResult] = {}
        finished = 0
        sem = asyncio.Semaphore(24)

        async def one(k: int) -> None:
            nonlocal finished
            async with sem:
                r = await c.generate(
                    PROMPTS[k % len(PROMPTS)], model="large", max_tokens=96, timeout_s=240, request_id=f"chaos-{k}"
                )
                assert r.id not in results, "a request was presented twice"
                results[r.id] = r
                finished += 1

        tasks = [asyncio.create_task(one(k)) for k in range(n)]

        async def at(count: int) -> None:
            while finished < count:  # noqa: ASYNC110 - a bounded poll, not a wait for one event
                await asyncio.sleep(0.02)

        await at(n // 5)
        await busy(fleet, "w1")
        fleet.signal("w1", signal.SIGKILL)  # mid-stream: in-flight requests of w1 had no terminal event
        fleet.wait("w1")
        await asyncio.sleep(2)
        fleet.start_worker("large", "w1")
        await at(n // 2)
        fleet.signal("router", signal.SIGTERM)
        assert fleet.wait("router", 30) == 0
        fleet.start_router()
        await at(int(n * 0.7))
        # what was taken over from the killed w1, before anything else lets a request go: by w2, or by the
        # restarted w1 (its log goes on in w1.log) when the rebalance hands it its partitions back
        resumed = resumed_ids(fleet.log("w1")) | resumed_ids(fleet.log("w2"))
        # the restarted w1 serves before w2 drains (on a busy machine it can still be loading its model here, and
        # with w2 draining the model would have no live worker: its breaker opens and requests are refused)
        w1 = fleet.procs["w1"].pid
        await first_status(fleet.settings, lambda st: status_pid(st) == w1 and st.state == "serving", timeout_s=180)
        fleet.signal("w2", signal.SIGTERM)  # drains in-flight work, commits, leaves the group, exits 0
        assert fleet.wait("w2", 60) == 0
        fleet.start_worker("large", "w2")
        await asyncio.wait_for(asyncio.gather(*tasks), 600)

    assert len(results) == n
    for k in range(n):
        r = results[f"chaos-{k}"]
        assert r.text == reference[PROMPTS[k % len(PROMPTS)]], f"chaos-{k}"
        assert r.finish_reason in ("stop", "length")
    restarts = sum(r.restarts for r in results.values())
    restarted = {rid for rid, r in results.items() if r.restarts}
    print(
        f"chaos: {n} requests, {len(resumed)} resumed mid-stream after the SIGKILL "
        f"({len(resumed - restarted)} with no restart seen by the client), {restarts} restarted generations"
    )
    assert resumed | restarted, "the SIGKILL should have caught generations mid-stream"
    assert len(resumed - restarted) >= 0.95 * len(resumed | restarted), "resume, not restart (issue 13)"
    deadline = time.monotonic() + 30
    while True:  # all work finished and committed: committed offsets reach the end, never beyond
        committed, end = await committed_vs_log_end(fleet, "large")
        assert all(committed[p] <= end[p] for p in end), (committed, end)
        if committed == end or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert committed == end
    assert "terminal_not_acked" not in fleet.log("w2")


async def test_rebalance_when_a_third_worker_joins(chaos_fleet: FleetProcs) -> None:
    """A steady stream; a third worker joins mid-way. No request lost or doubled; the pause is measured.
    The stream runs until the third worker holds partitions of its own and has been sent its share."""
    fleet = chaos_fleet
    rate_per_s = 8.0
    before_join = 24  # requests sent before the third worker starts (the TTFT before the join)
    after_join = 24  # requests sent once the group has settled with the third worker in it
    results: dict[str, GenerationResult] = {}
    ttft: list[tuple[float, float]] = []  # (send time, client TTFT)
    async with FleetClient(fleet.settings) as c:
        reference = {p: (await c.generate(p, model="large", max_tokens=16, timeout_s=60)).text for p in PROMPTS[:8]}

        async def one(k: int, t_send: float) -> None:
            from contracts import Chunk, Done

            first: float | None = None
            async for ev in c.stream(PROMPTS[k % 8], model="large", max_tokens=16, timeout_s=120, request_id=f"rb-{k}"):
                if isinstance(ev, Chunk) and first is None:
                    first = time.monotonic()
                if isinstance(ev, Done):
                    assert ev.id not in results
                    results[ev.id] = GenerationResult(
                        ev.id, ev.text, ev.finish_reason.value, ev.model, ev.usage, ev.timings, ev.run_id
                    )
            ttft.append((t_send - t0, ((first or time.monotonic()) - t_send) * 1000))

        t0 = time.monotonic()
        tasks = []
        k = 0
        join_at_s: float | None = None
        settled_at: int | None = None  # requests sent when the group had settled with w3 holding partitions
        while settled_at is None or k < settled_at + after_join:
            if join_at_s is None and k == before_join:
                fleet.start_worker("large", "w3")
                join_at_s = time.monotonic() - t0
            if settled_at is None and join_at_s is not None and k % 4 == 0:  # the logs are read twice a second
                if worker_partitions(fleet, "w3") and groups_settled(fleet):
                    settled_at = k
            assert time.monotonic() - t0 < 240, "the third worker never settled into the group"
            tasks.append(asyncio.create_task(one(k, time.monotonic())))
            k += 1
            await asyncio.sleep(1 / rate_per_s)
        await asyncio.wait_for(asyncio.gather(*tasks), 300)
    assert len(results) == k
    for i in range(k):
        assert results[f"rb-{i}"].text == reference[PROMPTS[i % 8]]
    before = sorted(v for t, v in ttft if t < join_at_s)
    during = sorted(v for t, v in ttft if t >= join_at_s)
    p50_before = before[len(before) // 2]
    print(
        f"rebalance: {k} requests; TTFT p50 before join {p50_before:.0f} ms; worst after join "
        f"{during[-1]:.0f} ms; pause ~{during[-1] - p50_before:.0f} ms"
    )
