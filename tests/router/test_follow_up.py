"""router/follow_up.py on hand-made sends and errors: every kind of send, failing retriably and for good, with
the broker reachable or not, becomes one typed decision."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from contracts import ContentType, ErrorCode, Request
from router.follow_up import Lost, Refuse, Retry, Undeliverable, follow_up
from router.sends import Send, SendKind
from router.stages.base import Context, Forward

FWD = Forward(
    Context(b"", [], 0, 0, ContentType.MSGPACK, Request(id="r1", reply_to="llm.replies.x", prompt="p"), "small"),
    ("llm.requests.small",),
)


def send(kind: SendKind, topic: str = "t") -> Send:
    return Send(kind, topic, b"v", b"k", [], request_id="r1")


def decide(kind: SendKind, exc: BaseException, *, reachable: bool = True, attempts: int = 0) -> object:
    return follow_up(
        send(kind),
        exc,
        FWD,
        reachable=reachable,
        attempts=attempts,
        max_attempts=3,
        salvage=lambda: {"id": "moved-1", "reply_to": "llm.replies.m"},
    )


@pytest.mark.parametrize("kind", list(SendKind))
def test_a_retriable_failure_of_any_send_is_retried_while_the_broker_does_not_answer(kind: SendKind) -> None:
    assert decide(kind, RequestTimedOutError(), reachable=False) == Retry(attempted=False)


def test_a_forward_too_large_is_refused_as_invalid_with_the_request_s_address_and_encoding() -> None:
    then = decide(SendKind.FORWARD, MessageSizeTooLargeError())
    assert isinstance(then, Refuse)
    r = then.reject
    assert (r.code, r.request_id, r.reply_to, r.to_dlq) == (ErrorCode.INVALID_REQUEST, "r1", "llm.replies.x", True)
    assert r.content_type == ContentType.MSGPACK.value and "too large" in r.message


def test_a_forward_to_a_closed_topic_is_refused_as_internal() -> None:
    then = decide(SendKind.FORWARD, TopicAuthorizationFailedError())
    assert isinstance(then, Refuse) and then.reject.code is ErrorCode.INTERNAL


def test_a_move_that_fails_for_good_is_refused_where_the_salvaged_request_says() -> None:
    then = decide(SendKind.MOVE, TopicAuthorizationFailedError())
    assert isinstance(then, Refuse)
    assert (then.reject.request_id, then.reject.reply_to) == ("moved-1", "llm.replies.m")
    assert "tenant's router" in then.reject.message


def test_an_error_reply_is_retried_a_bounded_number_of_times_then_undeliverable() -> None:
    assert decide(SendKind.REPLY, KafkaTimeoutError(), attempts=0) == Retry(attempted=True)
    assert decide(SendKind.REPLY, KafkaTimeoutError(), attempts=1) == Retry(attempted=True)
    then = decide(SendKind.REPLY, KafkaTimeoutError(), attempts=2)
    assert isinstance(then, Undeliverable) and not then.gone and then.topic == "t"


@pytest.mark.parametrize("exc", [UnknownTopicOrPartitionError(), TopicAuthorizationFailedError()])
def test_an_error_reply_to_a_missing_or_closed_topic_is_undeliverable_at_once_and_the_topic_marked(
    exc: BaseException,
) -> None:
    then = decide(SendKind.REPLY, exc, attempts=0)
    assert isinstance(then, Undeliverable) and then.gone


def test_a_dlq_copy_that_fails_for_good_is_lost_and_one_that_fails_retriably_is_retried() -> None:
    assert isinstance(decide(SendKind.DLQ, TopicAuthorizationFailedError()), Lost)
    assert decide(SendKind.DLQ, RequestTimedOutError()) == Retry(attempted=False)
