"""Deadline, cancel and overload scenarios: each asserts the terminal event and that the worker's
slot was freed (as the worker reports it on llm.fleet.status)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from contracts import Chunk, Codec, Done
from fleet.client import ExpiredError, FleetClient, OverloadedError, RequestCancelled
from fleet.kafka import make_consumer
from tests.fixtures_kafka import FleetProcs


async def wait_idle(fleet: FleetProcs, model: str, timeout_s: float = 10) -> float:
    """Seconds until every worker of `model` reports nothing running or waiting."""
    codec = Codec()
    c = make_consumer(fleet.settings, fleet.settings.kafka.topics.status, group_id=None)
    await c.start()
    t0 = time.monotonic()
    latest: dict[str, tuple[int, int]] = {}
    try:
        while time.monotonic() - t0 < timeout_s:
            batch = await c.getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    st = codec.decode_status(r.value)
                    if st.model == model:
                        latest[st.worker_id] = (st.running, st.waiting)
            if latest and all(v == (0, 0) for v in latest.values()):
                return time.monotonic() - t0
        raise AssertionError(f"{model} workers still busy after {timeout_s}s: {latest}")
    finally:
        await c.stop()


async def test_deadline_during_generation_expires_and_frees_the_slot(model_fleet: FleetProcs) -> None:
    async with FleetClient(model_fleet.settings) as c:
        t0 = time.monotonic()
        with pytest.raises(ExpiredError) as e:
            await c.generate("def slow():", model="large", max_tokens=3000, timeout_s=1.0)
        assert not e.value.retriable
        assert time.monotonic() - t0 < 5
    await wait_idle(model_fleet, "large")


async def test_cancel_frees_the_slot(model_fleet: FleetProcs) -> None:
    async with FleetClient(model_fleet.settings) as c:
        rid = f"cancel-{uuid.uuid4().hex[:8]}"
        with pytest.raises(RequestCancelled):
            async for ev in c.stream("class Cancelled:", model="large", max_tokens=3000, timeout_s=60, request_id=rid):
                if isinstance(ev, Chunk) and ev.seq == 0:
                    await c.cancel(rid)
                assert not isinstance(ev, Done)
        await c.cancel(rid)  # cancelling a finished id is harmless
    await wait_idle(model_fleet, "large")


async def test_overload_is_an_immediate_retriable_answer(simulated_fleet: FleetProcs) -> None:
    """Flood a slow simulated model past its backlog bound: the excess is refused at once, the rest completes."""
    async with FleetClient(simulated_fleet.settings) as c:

        async def one(k: int) -> str:
            t0 = time.monotonic()
            try:
                await c.generate(f"flood {k}", model="sim-a", max_tokens=100, timeout_s=120)
                return "done"
            except OverloadedError as exc:
                assert exc.retriable and time.monotonic() - t0 < 5
                return "overloaded"

        first = [asyncio.create_task(one(k)) for k in range(40)]
        await asyncio.sleep(2.0)  # the router sees the backlog grow
        second = [asyncio.create_task(one(100 + k)) for k in range(40)]
        outcomes = await asyncio.gather(*first, *second)
    assert outcomes.count("overloaded") >= 1
    assert outcomes.count("done") >= 16
    assert set(outcomes) <= {"done", "overloaded"}
    await wait_idle(simulated_fleet, "sim-a", timeout_s=60)


async def test_resent_request_id_is_generated_once_and_a_finished_one_gets_its_done_again(
    simulated_fleet: FleetProcs,
) -> None:
    """A producer re-sends the same id within the dedup window. While it runs, the re-send is dropped (one
    generation); once it finished, a re-send gets the same `done` again (same run, same text), as the resilience
    page promises: the router forgets a finished id when its usage record arrives, and the worker that finished it
    answers from memory."""
    import json

    from contracts import Done, Error
    from tests.kafka_helpers import RawPeer

    reply = f"sim.replies.dedup-{uuid.uuid4().hex[:6]}"
    rid = f"dup-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"id": rid, "reply_to": reply, "prompt": "once", "model": "sim-b", "max_tokens": 8}).encode()
    async with RawPeer(simulated_fleet.settings, reply) as peer:
        await peer.send(body, key=rid.encode())
        await peer.send(body, key=rid.encode())  # while the first runs: a duplicate
        first = await peer.reply(rid, Done)

        def dones() -> list[Done]:
            return [e for e in peer.replies if isinstance(e, Done) and e.id == rid]

        async def answered_again() -> None:  # the router hears of the finish through the usage topic
            while len(dones()) < 2:
                await peer.send(body, key=rid.encode())
                await asyncio.sleep(0.5)

        await asyncio.wait_for(answered_again(), 30)
        terminals = [e for e in peer.replies if isinstance(e, Done | Error) and e.id == rid]
        runs = {e.run_id for e in peer.replies if e.id == rid}
    assert all(isinstance(t, Done) and (t.run_id, t.text) == (first.run_id, first.text) for t in terminals)
    assert len(runs) == 1  # one generation: every `done` after the first is the same answer again
    assert '"router.duplicate"' in simulated_fleet.log("router")
    workers = [n for n in simulated_fleet.procs if n.startswith("worker-sim-b")]
    assert any('"worker.answered_again"' in simulated_fleet.log(n) for n in workers)
