"""What to do about a send that failed. Pure: no Kafka, no clock; router/delivery.py carries the decision out.

Retry          leave it for a redo (the batch is sought back); `attempted`: it counts against the reply's
               bounded attempts (only while the broker answers: during a broker pause everything fails,
               and nothing is given up for that)
Refuse         the request can never be sent where it was going (too large, a topic closed to the router):
               it is refused instead, with its reason
Undeliverable  an error reply that cannot be written: a DLQ copy records it; `gone`: the topic failed for
               good (unknown after the producer's full metadata wait, or closed), so replies to it are not
               tried again for a while
Lost           a DLQ copy or a relayed cancel that cannot be written: the log line is its record
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, UnknownTopicOrPartitionError

from contracts.codec import ContentType
from contracts.messages import ErrorCode
from fleet.kafka import is_retriable
from router.sends import Send, SendKind
from router.stages.base import Forward, Outcome, Reject


class Retry(msgspec.Struct, frozen=True):
    attempted: bool = False


class Refuse(msgspec.Struct, frozen=True):
    reject: Reject


class Undeliverable(msgspec.Struct, frozen=True):
    topic: str
    why: str
    gone: bool


class Lost(msgspec.Struct, frozen=True):
    why: str


FollowUp = Retry | Refuse | Undeliverable | Lost
RETRY = Retry()


def follow_up(
    send: Send,
    exc: BaseException,
    decision: Outcome | None,
    *,
    reachable: bool,
    attempts: int,
    max_attempts: int,
    salvage: Callable[[], dict[str, Any]],
) -> FollowUp:
    """`decision`: what the record's sends carry out; `reachable`: the broker answered meanwhile; `attempts`: how
    often this record's error reply failed before (while the broker answered); `salvage`: the id and reply_to
    a refusal can be addressed with when the request is not decoded (a move carries it as it came)."""
    retriable = is_retriable(exc)
    if send.kind is SendKind.MOVE and not retriable:
        # the owner's topic is missing or closed to this router: refused here, with the reason
        s = salvage()
        why = f"the request could not be sent to its tenant's router ({send.topic}): {exc!r}"[:500]
        return Refuse(Reject(ErrorCode.INTERNAL, why, s.get("id"), s.get("reply_to"), to_dlq=True))
    if send.kind is SendKind.FORWARD and not retriable:
        too_big = isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError)
        code = ErrorCode.INVALID_REQUEST if too_big else ErrorCode.INTERNAL
        why = "request too large to forward" if too_big else f"forward to {send.topic} failed"
        fwd = decision if isinstance(decision, Forward) else None
        reject = Reject(
            code,
            f"{why}: {exc!r}"[:500],
            send.request_id,
            fwd.request.reply_to if fwd is not None else None,
            to_dlq=True,
            content_type=fwd.content_type.value if fwd is not None else ContentType.JSON.value,
        )
        return Refuse(reject)
    if send.kind is SendKind.REPLY and (reachable or not retriable):
        # a topic the broker does not know after the producer's full metadata wait is gone for good
        gone = not retriable or isinstance(exc, UnknownTopicOrPartitionError)
        if not gone and attempts + 1 < max_attempts:
            return Retry(attempted=True)
        return Undeliverable(send.topic, repr(exc), gone)
    if send.kind in (SendKind.DLQ, SendKind.CONTROL) and not retriable:
        return Lost(repr(exc))
    return RETRY
