"""Issue 23, item 8, on real processes (router and simulated-engine workers): a producer whose clock runs a
minute behind the router's gets its requests served, not expired on arrival: the router counts `timeout_ms`
from its own receipt (or from the broker's stamp, on topics stamped with LogAppendTime), never from the
producer's clock. A clock running ahead buys nothing either: the deadline is capped from receipt."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from contracts import Done
from fleet.kafka import ensure_topics
from tests.fixtures_kafka import FleetProcs
from tests.kafka_helpers import RawPeer

pytestmark = pytest.mark.system


async def test_a_producer_clock_a_minute_behind_does_not_expire_its_requests(simulated_fleet: FleetProcs) -> None:
    s = simulated_fleet.settings
    reply = f"sim.replies.skew-{uuid.uuid4().hex[:6]}"
    await ensure_topics(s, {reply: 2})
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka.bootstrap, linger_ms=0)
    await producer.start()
    async with RawPeer(s, reply) as peer:
        try:
            ids = []
            for skew_ms in (-60_000, -5_000, 0):
                rid = f"skew{skew_ms}-{uuid.uuid4().hex[:4]}"
                body = {"id": rid, "reply_to": reply, "prompt": "hi", "model": "sim-a", "max_tokens": 3}
                body["timeout_ms"] = 3_000
                await producer.send_and_wait(
                    s.kafka.topics.requests,
                    json.dumps(body).encode(),
                    headers=[("content-type", b"application/json")],
                    timestamp_ms=int(time.time() * 1000) + skew_ms,
                )
                ids.append(rid)
        finally:
            await producer.stop()
        for rid in ids:  # on the code before, the -60 s and -5 s ones came back `expired` at once
            done = await peer.reply(rid, Done, timeout_s=30)
            assert done.usage.completion_tokens == 3
