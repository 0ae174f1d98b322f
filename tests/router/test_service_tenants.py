"""The router loop's tenant paths with a scripted producer (no broker), for the sends that can fail: a move to
the tenant's owner that fails for good is refused with a DLQ copy; a snapshot of the counters that fails
leaves the partition uncommitted until one succeeds; a held batch request whose forward fails for good when it
is released is refused, not held again forever. Every record ends in a typed outcome."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, TopicAuthorizationFailedError

from contracts import Codec, ContentType, Error, ErrorCode
from fleet.settings import Settings, TenantSettings
from fleet.tenants import mint_key
from router.accounts.account import Account
from router.service import RouterService
from tests.router.scripted import RecordingConsumer, ScriptedProducer, json_record, no_pause, now_ms

KEY, HASH = mint_key()
REPLY = "llm.replies.acme.t"
CODEC = Codec()


def settings(**limits: object) -> Settings:
    t = msgspec.convert({"name": "acme", "api_key_hashes": [str(HASH)], **limits}, TenantSettings)
    return Settings(tenants=[t])


def record(tp: TopicPartition, offset: int, rid: str, **body: object) -> ConsumerRecord[Any, Any]:
    headers = [("content-type", b"application/json"), ("fleet-api-key", KEY.encode())]
    body = {"id": rid, "reply_to": REPLY, "prompt": "hi", "max_tokens": 4, **body}
    return json_record(tp, offset, body, headers, int(time.time() * 1000))


def service(s: Settings, producer: ScriptedProducer, own: bool = True) -> tuple[RouterService, RecordingConsumer]:
    svc = RouterService(s)
    consumer = RecordingConsumer()
    svc.attach(producer, consumer, asyncio.Event())  # type: ignore[arg-type]
    svc.store._producer = producer  # type: ignore[assignment]
    svc.intake.pause = no_pause  # type: ignore[method-assign]
    if own:
        svc.views.accounts.accounts["acme"] = Account.new(s.tenants[0], int(time.time() * 1000))
    return svc, consumer


def errors(producer: ScriptedProducer) -> list[Error]:
    return [e for e in (CODEC.decode_reply(v) for v in producer.to(REPLY)) if isinstance(e, Error)]


async def test_a_move_that_fails_for_good_is_refused_with_a_dlq_copy_and_committed() -> None:
    s = settings(requests_per_s=10.0)
    owner = s.kafka.topics.tenant_intake("acme")
    producer = ScriptedProducer({owner: [TopicAuthorizationFailedError()]})
    svc, consumer = service(s, producer, own=False)
    tp = TopicPartition(s.kafka.topics.requests, 1)
    await svc.intake.handle(tp, [record(tp, 0, "m1"), record(tp, 1, "m2")], now_ms())
    (err,) = errors(producer)
    assert err.id == "m1" and err.code is ErrorCode.INTERNAL and "tenant's router" in err.message
    assert len(producer.to(s.kafka.topics.dlq)) == 1
    moved = [(v, p) for t, v, p in producer.acked if t == owner]
    assert len(moved) == 1 and moved[0][1] == 0  # the other one reached the owner's partition
    assert consumer.commits[-1] == {tp: 2}
    assert (svc.stats.moved, svc.stats.rejected) == (1, 1)


async def test_a_snapshot_that_fails_leaves_the_partition_uncommitted_until_one_is_written() -> None:
    s = settings(daily_tokens=10_000)
    state = s.kafka.topics.tenant_state
    producer = ScriptedProducer({state: [KafkaTimeoutError()]})
    svc, consumer = service(s, producer)
    tp = TopicPartition(s.kafka.topics.tenant_intake("acme"), 0)
    await svc.intake.handle(tp, [record(tp, 0, "a")], now_ms())
    assert consumer.commits == []  # the counters were not written: nothing past them is committed
    await svc.intake.handle(tp, [record(tp, 1, "b")], now_ms())
    assert consumer.commits == [{tp: 2}]  # the next snapshot reflects both
    assert svc.store.save_failures == 1 and svc.store.saved == 1
    sent = [v for t, v, _ in producer.acked if t.startswith("llm.requests.")]
    forwarded = [CODEC.decode_request(v, ContentType.JSON).id for v in sent]
    assert sorted(forwarded) == ["a", "b"]  # each forwarded once; the failed snapshot did not undo or redo one
    assert sorted(svc.views.accounts.accounts["acme"].state.ledger.pending) == ["a", "b"]


async def test_a_released_batch_request_whose_forward_fails_for_good_is_refused_not_held_forever() -> None:
    s = settings(requests_per_s=1000.0, burst_requests=1)
    lane = s.kafka.topics.model_batch(s.models[1].name)
    producer = ScriptedProducer({lane: [None, MessageSizeTooLargeError()]})  # the first forward goes, the second cannot
    svc, consumer = service(s, producer)
    tp = TopicPartition(s.kafka.topics.tenant_intake("acme"), 0)
    batch = {"priority": "batch", "model": s.models[1].name}
    await svc.intake.handle(tp, [record(tp, 0, "b1", **batch), record(tp, 1, "b2", **batch)], now_ms())
    assert svc.stats.held == 1 and consumer.commits[-1] == {tp: 1}  # committed up to the held one
    await asyncio.sleep(0.01)  # the rate admits the next
    await svc.intake.release_held(now_ms())
    (err,) = errors(producer)
    assert err.id == "b2" and err.code is ErrorCode.INVALID_REQUEST and "too large" in err.message
    assert not svc.intake.ledger.holding and not svc.views.accounts.accounts["acme"].held  # not held again
    assert consumer.commits[-1] == {tp: 2}
    await svc.intake.release_held(now_ms())  # nothing left: no send is tried again
    assert producer.tries[lane] == 2
