"""Tenants end to end through a real broker, a real router process and a simulated-engine worker (timed
token emission, no model): each refusal comes back as its error event with a DLQ copy that holds no key,
serving goes on afterwards, a tenant's own intake topic authenticates by topic, and no key reaches a log."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiokafka import TopicPartition

from contracts import Codec, Done, Error, ErrorCode
from contracts.messages import UsageRecord
from fleet.kafka import make_consumer, read_to_end
from fleet.tenants import mint_key
from tests.fixtures_kafka import FleetProcs, started, write_config
from tests.kafka_helpers import RawPeer, header

KEY, HASH = mint_key()
WRONG, _ = mint_key()
LIM_KEY, LIM_HASH = mint_key()
BUD_KEY, BUD_HASH = mint_key()
RECORD_KEY = "tenants-e2e-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
async def tenant_fleet(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FleetProcs]:
    d = tmp_path_factory.mktemp("tenantfleet")
    tenants = (
        f'[[tenants]]\nname = "alpha"\napi_key_hashes = ["{HASH}"]\nmax_tokens = 64\n'
        '[[tenants]]\nname = "gamma"\n'  # its intake topic is its only way in
        # three requests, then none for hours
        f'[[tenants]]\nname = "lim"\napi_key_hashes = ["{LIM_HASH}"]\nrequests_per_s = 0.0001\nburst_requests = 3\n'
        # "hi" costs at most 2 bytes + 48 template tokens + max_tokens 4 = 54 tokens: one fits, and once it is
        # settled (6 tokens spent) the next worst case no longer does
        f'[[tenants]]\nname = "bud"\napi_key_hashes = ["{BUD_HASH}"]\ndaily_tokens = 54\n'
    )
    cfg = write_config(
        d / "fleet.toml",
        [{"name": "sim", "path": "none", "engine": "simulated", "simulated_tokens_per_s": 400.0}],
        prefix="ten",
        tiers=[("only", "sim", float("inf"))],
        extra=tenants,
    )
    # records signed: workers serve only what the router forwarded, and accept a cancel relayed from an intake
    cfg.write_text(cfg.read_text().replace("[kafka]\n", f'[kafka]\nrecord_key = "{RECORD_KEY}"\n', 1))
    async with started(cfg, broker, d, [("sim", "worker-sim")]) as fleet:
        yield fleet


def body(reply_to: str, **kw: object) -> tuple[str, bytes]:
    rid = f"t-{uuid.uuid4().hex[:8]}"
    return rid, json.dumps({"id": rid, "reply_to": reply_to, "prompt": "hi", "max_tokens": 4, **kw}).encode()


def no_key(record: object) -> bool:
    names = [k.lower() for k, _ in record.headers or ()]  # type: ignore[attr-defined]
    values = b"".join(v or b"" for _, v in record.headers or ())  # type: ignore[attr-defined]
    return "fleet-api-key" not in names and KEY.encode() not in values and WRONG.encode() not in values


async def test_refusals_come_back_with_keyless_dlq_copies_and_serving_goes_on(tenant_fleet: FleetProcs) -> None:
    reply = f"ten.replies.alpha.e2e-{uuid.uuid4().hex[:6]}"
    ct = ("content-type", b"application/json")
    unanswered: list[str] = []
    async with RawPeer(tenant_fleet.settings, reply) as peer:
        # an unauthenticated sender may write nowhere: a DLQ copy, and no error event in alpha's stream (the
        # code before wrote one there: anyone could inject error events into any tenant's replies)
        unauthenticated = [
            [ct],  # no key
            [ct, ("fleet-api-key", WRONG.encode())],
            [ct, ("fleet-api-key", KEY.encode()), ("fleet-api-key", KEY.encode())],
        ]
        for headers in unauthenticated:
            rid, value = body(reply)
            await peer.send(value, headers=list(headers))
            copy = await peer.dlq_record(value)
            assert header(copy, "fleet-error-code") == "unauthenticated" and no_key(copy)
            unanswered.append(rid)
        # alpha's key, gamma's name in the body: forbidden, answered under alpha's own prefix only
        rid, value = body("ten.replies.gamma.inbox", tenant="gamma")
        await peer.send(value, headers=[ct, ("fleet-api-key", KEY.encode())])
        copy = await peer.dlq_record(value)
        assert header(copy, "fleet-error-code") == "forbidden" and no_key(copy)
        unanswered.append(rid)
        cases = [
            ([ct, ("fleet-api-key", KEY.encode())], ErrorCode.FORBIDDEN, {"tenant": "gamma"}),  # claims another
            ([ct, ("fleet-api-key", KEY.encode())], ErrorCode.INVALID_REQUEST, {"max_tokens": 65}),  # over ceiling
        ]
        for headers, code, extra in cases:
            rid, value = body(reply, **extra)
            await peer.send(value, headers=list(headers))
            err = await peer.reply(rid, Error)
            assert err.code is code and KEY not in err.message, (code, err)
            copy = await peer.dlq_record(value)
            assert header(copy, "fleet-error-code") == code.value and no_key(copy)
        # a reply_to outside the tenant's prefixes: no reply there, a DLQ copy
        _, value = body("ten.replies.gamma.stolen")
        await peer.send(value, headers=[ct, ("fleet-api-key", KEY.encode())])
        copy = await peer.dlq_record(value)
        assert header(copy, "fleet-error-code") == "forbidden" and no_key(copy)
        # and serving goes on: a request with the key is answered
        rid, value = body(reply)
        await peer.send(value, headers=[ct, ("fleet-api-key", KEY.encode())])
        done = await peer.reply(rid, Done)
        assert done.usage.completion_tokens > 0
    # the done came after every refusal above: none of the unanswerable ones got an event meanwhile
    assert not [e for e in peer.replies if e.id in unanswered], peer.replies
    # nor did gamma's stream: its refusal's DLQ copy was acknowledged with anything sent beside it, so the
    # topic read to its end now holds every event there will ever be for these ids
    gamma = await read_to_end(tenant_fleet.settings, ["ten.replies.gamma.inbox"])
    assert not [r for r in gamma if any(rid.encode() in (r.value or b"") for rid in unanswered)], gamma
    for name in tenant_fleet.procs:
        log = tenant_fleet.log(name)
        assert KEY not in log and WRONG not in log, f"a key reached the {name} log"


async def test_a_tenants_intake_topic_authenticates_by_topic(tenant_fleet: FleetProcs) -> None:
    reply = f"ten.replies.gamma.e2e-{uuid.uuid4().hex[:6]}"
    topic = tenant_fleet.settings.kafka.topics.tenant_intake("gamma")
    async with RawPeer(tenant_fleet.settings, reply) as peer:
        rid, value = body(reply)
        await peer.send(value, topic=topic)  # no key: the topic names the tenant
        assert isinstance(await peer.reply(rid, Done), Done)
        rid, value = body(reply, tenant="alpha")  # the topic's tenant, not the body's claim
        await peer.send(value, topic=topic)
        err = await peer.reply(rid, Error)
        assert err.code is ErrorCode.FORBIDDEN
        rid, value = body(reply)  # the same body on the shared intake, without a key: unauthenticated
        await peer.send(value)
        copy = await peer.dlq_record(value)  # a DLQ copy alone: nobody authenticated, nowhere to reply
        assert header(copy, "fleet-error-code") == "unauthenticated"
        assert not [e for e in peer.replies if e.id == rid]


async def test_a_tenant_that_may_write_only_its_intake_topic_cancels_its_own_request_there(
    tenant_fleet: FleetProcs,
) -> None:
    """gamma has no API key: its intake topic is its only way in, and llm.control would need a key. A cancel on
    its intake topic is relayed, signed, to the workers, which stop gamma's run of the id; the same cancel written
    straight to the control topic, keyed "gamma" but unsigned, stops nothing."""
    s = tenant_fleet.settings
    reply = f"ten.replies.gamma.cancel-{uuid.uuid4().hex[:6]}"
    topic = s.kafka.topics.tenant_intake("gamma")
    async with RawPeer(s, reply) as peer:
        forged_id, value = body(reply, max_tokens=1200)  # 3 s at 400 tokens/s: running when the cancels come
        await peer.send(value, topic=topic)
        await peer.wait_for(lambda e: getattr(e, "id", None) == forged_id, "gamma's first chunk")
        cancel = json.dumps({"type": "cancel", "id": forged_id}).encode()
        await peer.send(cancel, topic=s.kafka.topics.control, key=b"gamma")  # forged: no router's MAC
        assert isinstance(await peer.reply(forged_id, Done), Done), "an unsigned relay stopped nothing"

        rid, value = body(reply, max_tokens=1200)
        await peer.send(value, topic=topic)
        await peer.wait_for(lambda e: getattr(e, "id", None) == rid, "gamma's first chunk")
        await peer.send(json.dumps({"type": "cancel", "id": rid}).encode(), topic=topic)  # no key: the topic says
        err = await peer.reply(rid, Error)
        assert err.code is ErrorCode.CANCELLED
    assert '"router.cancel"' in tenant_fleet.log("router")
    assert '"worker.cancel_unauthenticated"' in tenant_fleet.log("worker-sim")


async def test_rate_limits_and_budgets_answer_with_retry_after_and_serving_goes_on(tenant_fleet: FleetProcs) -> None:
    s = tenant_fleet.settings
    odd = [("x-null", None), ("x-bin", b"\xff\x00\xfe"), ("x-dup", b"1"), ("x-dup", b"2"), ("", b"")]
    cases = (("lim", LIM_KEY, 3, ErrorCode.RATE_LIMITED), ("bud", BUD_KEY, 1, ErrorCode.BUDGET_EXCEEDED))
    # whatever lands on the usage topic, the owner's books only ever grow by real usage: garbage, huge records
    # and a negative one for "bud" (which, applied, would have made room for a second request) change nothing
    now_ms = int(time.time() * 1000)
    bogus = UsageRecord(
        id="x",
        model="sim",
        tenant="bud",
        prompt_tokens=-10_000,
        completion_tokens=0,
        cost=-1.0,
        ts_ms=now_ms,
        finish="stop",
    )
    # and one charging "bud" a trillion tokens for a request it never made (it locked "bud" out for the month on
    # the code before): a usage record settles only a reservation its router made, capped at its worst case
    lockout = msgspec.structs.replace(bogus, id="never-reserved", prompt_tokens=10**12, cost=1e12)
    async with RawPeer(s, "ten.replies.bud.bogus") as peer:
        for value in (b"", b"\xff\x00", b"{}", b"[" * 100_000, Codec().encode(bogus), Codec().encode(lockout)):
            await peer.send(value, topic=s.kafka.topics.usage)
    await asyncio.sleep(1.0)  # the router's usage feed reads them
    for tenant, key, passes, code in cases:
        reply = f"ten.replies.{tenant}.e2e-{uuid.uuid4().hex[:6]}"
        async with RawPeer(s, reply) as peer:
            headers = [("content-type", b"application/json"), ("fleet-api-key", key.encode()), *odd]
            for _ in range(passes):  # via the shared intake: moved to the tenant's owner, odd headers and all
                rid, value = body(reply)
                await peer.send(value, headers=headers)
                assert isinstance(await peer.reply(rid, Done), Done), tenant
            rid, value = body(reply)
            await peer.send(value, headers=headers)
            err = await peer.reply(rid, Error)
            assert err.code is code and err.retriable is code.retriable, err
            assert err.retry_after_ms is not None and err.retry_after_ms > 0, err
            # a refusal of policy, not bad input: no DLQ copy
            assert not [r for r in peer.dlq if r.value == value]
    # the moved records reached the owner without the key
    c = make_consumer(s, group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        topic = s.kafka.topics.tenant_intake("lim")
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        moved = [r for rs in (await c.getmany(tp, timeout_ms=2000)).values() for r in rs]
        assert len(moved) >= 4 and all(no_key(r) and LIM_KEY.encode() not in (r.value or b"") for r in moved)
        assert all(("x-bin", b"\xff\x00\xfe") in list(r.headers) for r in moved)  # the rest as sent
    finally:
        await c.stop()
    # and the fleet serves everyone else as before
    reply = f"ten.replies.alpha.e2e-{uuid.uuid4().hex[:6]}"
    async with RawPeer(s, reply) as peer:
        rid, value = body(reply)
        await peer.send(value, headers=[("content-type", b"application/json"), ("fleet-api-key", KEY.encode())])
        assert isinstance(await peer.reply(rid, Done), Done)
