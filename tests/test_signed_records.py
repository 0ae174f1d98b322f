"""Issue 23, items 2 and 4, on real processes (a router and a simulated-engine worker sharing a record key): a
request written straight to a model topic skips the router no more (the worker serves only records the router
signed: a DLQ copy `unauthenticated`, no reply), and a forged zero-cost usage record cannot settle a tenant's
reservation to free its budget (the router settles only with a worker's signed record). Requests through the
router are served as before, their usage signed and settled."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from contracts import Chunk, Codec, Done, Error, ErrorCode
from contracts.messages import UsageRecord
from fleet.tenants import mint_key
from tests.fixtures_kafka import FleetProcs, started, write_config
from tests.kafka_helpers import RawPeer, header

pytestmark = pytest.mark.system

KEY, HASH = mint_key()
SECRET = "f00d" * 16


@pytest.fixture(scope="module")
async def signed_fleet(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FleetProcs]:
    d = tmp_path_factory.mktemp("signedfleet")
    prefix = f"sig{uuid.uuid4().hex[:4]}"
    # "hi" with max_tokens 200 costs at most 2 bytes + 48 template tokens + 200 = 250: one fits in 300, two do not
    tenants = f'[[tenants]]\nname = "acme"\napi_key_hashes = ["{HASH}"]\ndaily_tokens = 300\n'
    cfg = write_config(
        d / "fleet.toml",
        [{"name": "sim", "path": "none", "engine": "simulated", "simulated_tokens_per_s": 25.0}],
        prefix=prefix,
        extra=tenants,
    )
    cfg.write_text(cfg.read_text().replace("[kafka]\n", f'[kafka]\nrecord_key = "{SECRET}"\n', 1))
    async with started(cfg, broker, d, [("sim", "worker-sim")]) as fleet:
        yield fleet


def request(rid: str, reply_to: str, **kw: object) -> bytes:
    return json.dumps({"id": rid, "reply_to": reply_to, "prompt": "hi", "model": "sim", **kw}).encode()


async def test_a_record_written_straight_to_a_model_topic_is_not_served(signed_fleet: FleetProcs) -> None:
    s = signed_fleet.settings
    reply = f"{s.kafka.topic_prefix}.replies.acme.direct-{uuid.uuid4().hex[:4]}"
    ct = ("content-type", b"application/json")
    async with RawPeer(s, reply) as peer:
        rid = f"bypass-{uuid.uuid4().hex[:6]}"
        value = request(rid, reply, max_tokens=3, tenant="acme")
        await peer.send(value, key=rid.encode(), topic=s.kafka.topics.model("sim"), headers=[ct])
        copy = await peer.dlq_record(value)
        assert header(copy, "fleet-error-code") == "unauthenticated"
        ok = f"routed-{uuid.uuid4().hex[:6]}"  # the same through the router: signed, served
        await peer.send(request(ok, reply, max_tokens=3), headers=[ct, ("fleet-api-key", KEY.encode())])
        assert (await peer.reply(ok, Done)).usage.completion_tokens == 3
        assert not [e for e in peer.replies if e.id == rid]  # the bypass got no event at all


async def test_a_forged_usage_record_cannot_free_a_reservation(signed_fleet: FleetProcs) -> None:
    s = signed_fleet.settings
    reply = f"{s.kafka.topic_prefix}.replies.acme.budget-{uuid.uuid4().hex[:4]}"
    headers = [("content-type", b"application/json"), ("fleet-api-key", KEY.encode())]
    async with RawPeer(s, reply) as peer:
        deadline = time.monotonic() + 30
        while True:  # an earlier test's reservation may not be settled yet (it was: 53 of 300 tokens still held)
            first = f"long-{uuid.uuid4().hex[:6]}"  # 200 tokens at 25/s: 8 s, holding its 250-token reservation
            await peer.send(request(first, reply, max_tokens=200), headers=headers)
            ev = await peer.wait_for(lambda e, rid=first: getattr(e, "id", None) == rid, "the long request's answer")
            if isinstance(ev, Chunk):
                break
            assert isinstance(ev, Error) and ev.code is ErrorCode.BUDGET_EXCEEDED, ev
            assert time.monotonic() < deadline, "the earlier tests' reservations were never settled"
            await asyncio.sleep(0.2)
        forged = UsageRecord(
            id=first, model="sim", tenant="acme", prompt_tokens=0, completion_tokens=0, cost=0.0,
            ts_ms=int(time.time() * 1000), finish="stop",
        )  # fmt: skip
        await peer.send(Codec().encode(forged), key=first.encode(), topic=s.kafka.topics.usage)
        second = f"second-{uuid.uuid4().hex[:6]}"
        await peer.send(request(second, reply, max_tokens=200), headers=headers)
        err = await peer.reply(second, Error, timeout_s=30)  # on the code before: admitted (the forgery freed it)
        assert err.code is ErrorCode.BUDGET_EXCEEDED, err
        done = await peer.reply(first, Done, timeout_s=60)
        assert done.usage.completion_tokens == 200
    assert "router.usage_not_signed" in signed_fleet.log("router")
