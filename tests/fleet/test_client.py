"""The client's presentation rules against a real broker: the test plays the worker by producing
reply events directly (a retried run, a late event of the abandoned run, duplicates)."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer

from contracts import Chunk, Codec, Done, Error, ErrorCode, FinishReason, Timings, Usage
from fleet.client import FleetClient, RequestCancelled, Restart
from fleet.settings import load_settings


def done(rid: str, run: str, seq: int, text: str) -> Done:
    return Done(
        id=rid,
        seq=seq,
        text=text,
        finish_reason=FinishReason.LENGTH,
        model="m",
        usage=Usage(1, 2),
        timings=Timings(queue_ms=0, ttft_ms=1, tpot_ms=1, total_ms=2),
        run_id=run,
    )


async def play(broker: str, topic: str, events: list[Chunk | Done | Error], delay_s: float = 0.3) -> None:
    await asyncio.sleep(delay_s)  # after the client has sent its request
    p = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=0)
    await p.start()
    try:
        for ev in events:
            await p.send_and_wait(topic, Codec().encode(ev), key=ev.id.encode())
    finally:
        await p.stop()


async def test_restart_is_presented_once_and_late_events_are_dropped(broker: str) -> None:
    s = load_settings(env={"FLEET_KAFKA_BOOTSTRAP": broker, "FLEET_TOPIC_PREFIX": f"cl{uuid.uuid4().hex[:6]}"})
    rid = "req-restart"
    async with FleetClient(s) as c:
        t = c.reply_topic
        script = [
            Chunk(id=rid, seq=0, text="Hel", run_id="A"),
            Chunk(id=rid, seq=0, text="Hel", run_id="A"),  # duplicate delivery
            Chunk(id=rid, seq=0, text="Hello", run_id="B"),  # the request was redone elsewhere
            Chunk(id=rid, seq=1, text="lo wor", run_id="A"),  # late event of the abandoned run
            Chunk(id="someone-else", seq=0, text="x", run_id="Z"),  # another request on the shared topic
            Chunk(id=rid, seq=1, text=" world", run_id="B"),
            done(rid, "A", 2, "Hello wor"),  # late terminal of the abandoned run
            done(rid, "B", 2, "Hello world"),
        ]
        player = asyncio.create_task(play(broker, t, script))
        events = [ev async for ev in c.stream("p", request_id=rid, timeout_s=20)]
        await player
    assert [type(e).__name__ for e in events] == ["Chunk", "Restart", "Chunk", "Chunk", "Done"]
    assert isinstance(events[1], Restart) and events[1].run_id == "B"
    assert "".join(e.text for e in events[2:4] if isinstance(e, Chunk)) == "Hello world"
    assert isinstance(events[-1], Done) and events[-1].text == "Hello world" and events[-1].run_id == "B"


async def test_generate_counts_restarts_and_errors_raise_typed(broker: str) -> None:
    s = load_settings(env={"FLEET_KAFKA_BOOTSTRAP": broker, "FLEET_TOPIC_PREFIX": f"cl{uuid.uuid4().hex[:6]}"})
    async with FleetClient(s) as c:
        t = c.reply_topic
        player = asyncio.create_task(
            play(
                broker,
                t,
                [
                    Chunk(id="g1", seq=0, text="a", run_id="A"),
                    Chunk(id="g1", seq=0, text="b", run_id="B"),
                    done("g1", "B", 1, "b"),
                ],
            )
        )
        r = await c.generate("p", request_id="g1", timeout_s=20)
        await player
        assert r.text == "b" and r.restarts == 1 and r.run_id == "B"
        player = asyncio.create_task(
            play(broker, t, [Error(id="g2", code=ErrorCode.CANCELLED, message="cancelled", seq=3, run_id="A")])
        )
        try:
            await c.generate("p", request_id="g2", timeout_s=20)
            raise AssertionError("expected RequestCancelled")
        except RequestCancelled as exc:
            assert exc.code is ErrorCode.CANCELLED and not exc.retriable
        await player
