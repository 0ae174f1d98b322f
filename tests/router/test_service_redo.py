"""The router loop's redo path with a scripted producer (no broker): when part of a record's outcome was
acknowledged and part failed retriably, the redo sends only the missing part, so a refused record's DLQ
copy is written once however often its error reply is retried."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import RequestTimedOutError

from contracts import Codec, ContentType
from fleet.settings import Settings
from router.service import RouterService
from tests.router.scripted import RecordingConsumer, ScriptedProducer, json_record, no_pause, now_ms

S = Settings()
TP = TopicPartition(S.kafka.topics.requests, 0)
REPLY = "llm.replies.redo"
CODEC = Codec()


def record(offset: int, body: dict[str, Any]) -> ConsumerRecord[Any, Any]:
    return json_record(TP, offset, body, [("content-type", b"application/json")])


async def test_a_retried_error_reply_does_not_write_the_dlq_copy_again() -> None:
    svc = RouterService(S)
    # the error reply fails twice (retriably), then goes through
    producer, consumer = ScriptedProducer({REPLY: [RequestTimedOutError()] * 2}), RecordingConsumer()
    svc.attach(producer, consumer, asyncio.Event())  # type: ignore[arg-type]
    svc.intake.pause = no_pause  # type: ignore[method-assign]
    records = [
        record(0, {"id": "bad", "reply_to": REPLY, "prompt": "x", "model": "no-such-model"}),
        record(1, {"id": "good", "reply_to": REPLY, "prompt": "x", "model": S.models[0].name}),
    ]
    for attempt in range(3):  # the reply fails twice (retriably), then goes through
        await svc.intake.handle(TP, records, now_ms())
        if attempt < 2:
            assert consumer.seeks[-1] == (TP, 0)  # redone from the refused record
    assert consumer.commits[-1] == {TP: 2}
    dlq = S.kafka.topics.dlq
    assert producer.tries[dlq] == 1 and producer.acked_to(dlq) == 1  # one DLQ copy, whatever the retries
    assert producer.tries[REPLY] == 3 and producer.acked_to(REPLY) == 1
    model_topic = S.kafka.topics.model(S.models[0].name)
    assert producer.tries[model_topic] == 1  # the forward after it was acknowledged once, never redone
    st = svc.stats
    assert (st.rejected, st.dlq, st.forwarded, st.redone, st.committed) == (1, 1, 1, 2, 2)


async def test_a_retried_dlq_copy_does_not_resend_the_acknowledged_reply() -> None:
    svc = RouterService(S)
    dlq = S.kafka.topics.dlq

    producer, consumer = ScriptedProducer({dlq: [RequestTimedOutError()]}), RecordingConsumer()
    svc.attach(producer, consumer, asyncio.Event())  # type: ignore[arg-type]
    svc.intake.pause = no_pause  # type: ignore[method-assign]
    records = [record(0, {"id": "bad", "reply_to": REPLY, "prompt": "x", "model": "no-such-model"})]
    await svc.intake.handle(TP, records, now_ms())
    assert consumer.seeks == [(TP, 0)] and not consumer.commits
    await svc.intake.handle(TP, records, now_ms())
    assert consumer.commits == [{TP: 1}]
    assert producer.acked_to(REPLY) == 1 and producer.acked_to(dlq) == 1


def forward_ids(producer: ScriptedProducer) -> list[str]:
    model_topic = S.kafka.topics.model(S.models[0].name)
    return [CODEC.decode_request(v, ContentType.JSON).id for v in producer.to(model_topic)]


@pytest.mark.parametrize("position", range(4))
async def test_a_failed_forward_in_any_position_redoes_from_it_and_forwards_each_request_once(position: int) -> None:
    model_topic = S.kafka.topics.model(S.models[0].name)
    script: list[BaseException | None] = [None] * position + [RequestTimedOutError()]
    producer, consumer = ScriptedProducer({model_topic: script}), RecordingConsumer()
    svc = RouterService(S)
    svc.attach(producer, consumer, asyncio.Event())  # type: ignore[arg-type]
    svc.intake.pause = no_pause  # type: ignore[method-assign]
    body = {"reply_to": REPLY, "prompt": "x", "model": S.models[0].name}
    records = [record(o, {"id": f"r{o}", **body}) for o in range(4)]
    await svc.intake.handle(TP, records, now_ms())
    assert consumer.seeks == [(TP, position)]  # redone from the failed one
    assert consumer.commits == ([{TP: position}] if position else [])  # what came before it is committed
    await svc.intake.handle(TP, records[position:], now_ms())  # the fetch after the seek
    assert consumer.commits[-1] == {TP: 4}
    assert sorted(forward_ids(producer)) == [f"r{o}" for o in range(4)]  # each acknowledged once
    assert producer.tries[model_topic] == 5  # the four, and the failed one again
    st = svc.stats
    assert (st.forwarded, st.redone, st.committed, st.rejected) == (4, 1, 4, 0)


async def test_a_rebalance_between_send_and_ack_drops_the_commit_and_forgets_the_partition() -> None:
    svc = RouterService(S)
    consumer = RecordingConsumer()

    def revoke(topic: str) -> None:  # the group moves on while the forwards are in flight
        consumer.revoked = True
        svc.intake.forget(TP)

    producer = ScriptedProducer(on_send=revoke)
    svc.attach(producer, consumer, asyncio.Event())  # type: ignore[arg-type]
    svc.intake.pause = no_pause  # type: ignore[method-assign]
    body = {"reply_to": REPLY, "prompt": "x", "model": S.models[0].name}
    await svc.intake.handle(TP, [record(o, {"id": f"r{o}", **body}) for o in range(3)], now_ms())
    assert consumer.commits == [] and svc.stats.commits_dropped == 1  # its new owner redoes them
    assert svc.intake.ledger.get(TP) is None  # nothing of it is kept to skip or hold later
    assert sorted(forward_ids(producer)) == ["r0", "r1", "r2"]  # sent once here; a redo is dropped by id
