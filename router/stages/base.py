"""What a stage sees and what it may say. A stage is pure: no Kafka, no clock (the time is `ctx.now_ms`).

A stage returns `Continue` (with the context as it leaves it: a decoded or changed request, a chosen model)
or one of the outcomes that end the pipeline: `Reject` (an error code for the sender, and a DLQ copy for
bad input), `Drop` (nothing is sent: a duplicate), `Answer` (a reply the router sends itself), `Forward`
(the publishes: the model topic, later a shadow copy), `Move` (the record goes to the router that owns its
tenant's counters) or `Hold` (a batch request waits for its tenant's rate). The Kafka loop
(router/service.py) carries them out.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from contracts.codec import ContentType
from contracts.messages import ErrorCode, ReplyEvent, Request
from fleet.records import Header
from fleet.settings import TenantSettings


class Context(msgspec.Struct, frozen=True):
    """One intake record in its current state: the raw record in, what the stages so far made of it
    (a msgspec struct: `msgspec.structs.replace` is a few times cheaper than `dataclasses.replace`).

    The verdicts below are frozen msgspec structs too: one is made per stage and record, and a frozen dataclass
    costs several times as much to build (its __init__ goes through object.__setattr__)."""

    value: bytes | None
    headers: list[Header]
    # the record's timestamp where the broker set it (LogAppendTime), else 0: a producer's clock is not ours, and
    # one running behind expired requests at once (router/sends.py broker_timestamp_ms)
    timestamp_ms: int
    now_ms: int  # the router's clock when the batch was fetched
    content_type: ContentType = ContentType.JSON
    request: Request | None = None  # decoded; the deadline stage makes its deadline absolute
    model: str | None = None
    tier: str | None = None
    score: float | None = None  # the classifier's score when the model was "auto"
    topic: str = ""  # the intake topic it came from (a tenant's own topic names the tenant)
    partition: int = 0
    paced: bool = False  # a held batch request released by the pacer, which took its rate already
    tenant: TenantSettings | None = None  # authenticated (None: no tenants configured, the default tenant)
    signals: tuple[str, ...] = ()  # the features that moved the classifier's score most ("auto" only)
    requested_model: str | None = None  # the model asked for, when the fallback stage chose another


class Continue(msgspec.Struct, frozen=True):
    ctx: Context


class Reject(msgspec.Struct, frozen=True):
    code: ErrorCode
    message: str
    request_id: str | None  # where the error can be addressed, if at all
    reply_to: str | None
    to_dlq: bool  # bad input goes to the DLQ; operational refusals (expired, overloaded) do not
    content_type: str = "application/json"
    retry_after_ms: int | None = None


class Drop(msgspec.Struct, frozen=True):
    """Nothing is sent and the record is done (a duplicate of a request already forwarded)."""

    code: str
    request_id: str


class Answer(msgspec.Struct, frozen=True):
    """A reply the router sends itself instead of forwarding (e.g. from a cache)."""

    request_id: str
    reply_to: str
    event: ReplyEvent
    content_type: ContentType = ContentType.JSON


class Forward(msgspec.Struct, frozen=True):
    request: Request  # model resolved, deadline made absolute
    model: str
    tier: str | None
    score: float | None
    content_type: ContentType = ContentType.JSON  # as the sender encoded it; replies and the forward use it too
    topics: tuple[str, ...] = ()  # where it is published: the model topic first
    tenant: str | None = None  # authenticated (None: the default tenant); the request carries it too
    signals: tuple[str, ...] = ()  # why "auto" chose the tier: the classifier's top features
    requested_model: str | None = None  # the model asked for, when a fallback serves it (header for the worker)


class Move(msgspec.Struct, frozen=True):
    """The record belongs to another router: re-publish it, as it came (less its API key), to the partition
    that owns its tenant's counters (partition 0 of the tenant's intake topic)."""

    topic: str
    partition: int
    tenant: str


class Hold(msgspec.Struct, frozen=True):
    """A batch request over its tenant's rate: held by the router and run again when the rate admits it."""

    tenant: str
    tokens: int  # what it takes from the tokens-per-minute rate when released


Outcome = Reject | Drop | Answer | Forward | Move | Hold
Verdict = Continue | Outcome


class Stage(Protocol):
    """A step of the pipeline. It may also have `active` (bool): False when nothing is configured for it to do
    (the pipeline then leaves it out: an installation does not pay for what it does not use)."""

    name: str

    def __call__(self, ctx: Context) -> Verdict: ...


def verdict_code(v: Outcome) -> str:
    """The code a verdict is counted under (RouterStats.verdicts: `<stage>.<code>`). Forward first: nearly every
    record ends so."""
    if isinstance(v, Forward):
        return "forward"
    if isinstance(v, Reject):
        return v.code.value
    if isinstance(v, Drop):
        return v.code
    if isinstance(v, Move):
        return "move"
    if isinstance(v, Hold):
        return "hold"
    return "answer"  # the one outcome left
