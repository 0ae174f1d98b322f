"""What a stage sees and what it may say. A stage is pure: no Kafka, no clock (the time is `ctx.now_ms`).

A stage returns `Continue` (with the context as it leaves it: a decoded or changed request, a chosen model)
or one of the outcomes that end the pipeline: `Reject` (an error code for the sender, and a DLQ copy for
bad input), `Drop` (nothing is sent: a duplicate), `Answer` (a reply the router sends itself), `Forward`
(the publishes: the model topic, later a shadow copy), `Move` (the record goes to the router that owns its
tenant's counters), `Hold` (a batch request waits for its tenant's rate) or `RelayCancel` (a tenant's cancel,
relayed to the control topic). The Kafka loop
(router/intake.py, router/delivery.py) carries them out.
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


class _Refusal(msgspec.Struct, frozen=True):
    code: ErrorCode
    message: str
    request_id: str | None  # where the error can be addressed, if at all
    reply_to: str | None  # None: no error event (only a DLQ copy, if any)


class Reject(_Refusal, frozen=True, kw_only=True):
    """A refusal: `Reject(code, message, request_id, reply_to, to_dlq=..., content_type=..., retry_after_ms=...)`.
    The flags are keyword-only, so a call says what its True or False means."""

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
    """Publish the request: the final context (every stage's view of it: the request with its model resolved and
    its deadline made absolute, the tier, the score and its signals, the authenticated tenant) and the topics it
    goes to (the model topic first). A later stage or a send reads what it needs from `ctx`."""

    ctx: Context
    topics: tuple[str, ...]

    @property
    def request(self) -> Request:
        assert self.ctx.request is not None, "a forward carries a decoded request"
        return self.ctx.request

    @property
    def model(self) -> str:
        assert self.ctx.model is not None, "a forward carries a resolved model"
        return self.ctx.model

    @property
    def tier(self) -> str | None:
        return self.ctx.tier

    @property
    def score(self) -> float | None:
        return self.ctx.score  # the classifier's score when the model was "auto"

    @property
    def content_type(self) -> ContentType:
        return self.ctx.content_type  # as the sender encoded it; replies and the forward use it too

    @property
    def tenant(self) -> str | None:
        return self.ctx.tenant.name if self.ctx.tenant is not None else None  # None: the default tenant

    @property
    def signals(self) -> tuple[str, ...]:
        return self.ctx.signals  # why "auto" chose the tier: the classifier's top features

    @property
    def requested_model(self) -> str | None:
        return self.ctx.requested_model  # the model asked for, when a fallback serves it (header for the worker)


class Move(msgspec.Struct, frozen=True):
    """The record belongs to another router: re-publish it, as it came (less its API key), to the partition
    that owns its tenant's counters (partition 0 of the tenant's intake topic)."""

    topic: str
    partition: int
    tenant: str


class RelayCancel(msgspec.Struct, frozen=True):
    """A cancel that came through the intake: relayed to the control topic for the tenant it authenticated as
    (signed where records are, so workers stop only that tenant's runs of the id)."""

    tenant: str
    request_id: str


class Hold(msgspec.Struct, frozen=True):
    """A batch request over its tenant's rate: held by the router and run again when the rate admits it."""

    tenant: str
    tokens: int  # what it takes from the tokens-per-minute rate when released


Outcome = Reject | Drop | Answer | Forward | Move | Hold | RelayCancel
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
    if isinstance(v, RelayCancel):
        return "cancel"
    return "answer"  # the one outcome left
