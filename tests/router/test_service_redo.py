"""The router loop's redo path with a scripted producer (no broker): when part of a record's outcome was
acknowledged and part failed retriably, the redo sends only the missing part, so a refused record's DLQ
copy is written once however often its error reply is retried."""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import RequestTimedOutError

from fleet.settings import Settings
from router.service import RouterService
from tests.router.scripted import RecordingConsumer, ScriptedProducer, json_record, no_pause

S = Settings()
TP = TopicPartition(S.kafka.topics.requests, 0)
REPLY = "llm.replies.redo"


def record(offset: int, body: dict[str, Any]) -> ConsumerRecord[Any, Any]:
    return json_record(TP, offset, body, [("content-type", b"application/json")])


async def test_a_retried_error_reply_does_not_write_the_dlq_copy_again() -> None:
    svc = RouterService(S)
    # the error reply fails twice (retriably), then goes through
    producer, consumer = ScriptedProducer({REPLY: [RequestTimedOutError()] * 2}), RecordingConsumer()
    svc._producer = producer
    svc._consumer = consumer
    svc._pause = no_pause  # type: ignore[method-assign]
    records = [
        record(0, {"id": "bad", "reply_to": REPLY, "prompt": "x", "model": "no-such-model"}),
        record(1, {"id": "good", "reply_to": REPLY, "prompt": "x", "model": S.models[0].name}),
    ]
    for attempt in range(3):  # the reply fails twice (retriably), then goes through
        await svc._handle_partition(TP, records)
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
    svc._producer = producer
    svc._consumer = consumer
    svc._pause = no_pause  # type: ignore[method-assign]
    records = [record(0, {"id": "bad", "reply_to": REPLY, "prompt": "x", "model": "no-such-model"})]
    await svc._handle_partition(TP, records)
    assert consumer.seeks == [(TP, 0)] and not consumer.commits
    await svc._handle_partition(TP, records)
    assert consumer.commits == [{TP: 1}]
    assert producer.acked_to(REPLY) == 1 and producer.acked_to(dlq) == 1
