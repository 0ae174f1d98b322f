"""Wire structs. Field names are the public API: add fields only with defaults,
never change a field's type or meaning (msgspec schema-evolution rules)."""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class Priority(enum.StrEnum):
    INTERACTIVE = "interactive"
    BATCH = "batch"


class ErrorCode(enum.StrEnum):
    """Every `error` event carries one of these codes (documented in docs/wire-contract.md)."""

    INVALID_ENCODING = "invalid_encoding"  # bytes do not decode in the declared content type
    INVALID_REQUEST = "invalid_request"  # decodes, but a field is missing, mistyped or out of range
    PROMPT_TOO_LONG = "prompt_too_long"  # prompt over the configured character or token limit
    UNKNOWN_MODEL = "unknown_model"  # `model` names no configured model or tier
    EXPIRED = "expired"  # the deadline passed before or during generation
    OVERLOADED = "overloaded"  # backlog means the request cannot start in time; retry later
    CANCELLED = "cancelled"  # a cancel message stopped the request
    POISON = "poison"  # the worker failed on this message repeatedly; it went to the DLQ
    INTERNAL = "internal"  # an unexpected failure inside the fleet
    UNAUTHENTICATED = "unauthenticated"  # tenants are configured and the request carries no valid API key
    FORBIDDEN = "forbidden"  # the tenant may not do this: another tenant's name, a reply topic, a model
    RATE_LIMITED = "rate_limited"  # over the tenant's requests/s or tokens/min: retry after `retry_after_ms`
    BUDGET_EXCEEDED = "budget_exceeded"  # the tenant's day or month budget is spent: not before it rolls over

    @property
    def retriable(self) -> bool:
        return self in (ErrorCode.OVERLOADED, ErrorCode.INTERNAL, ErrorCode.RATE_LIMITED)


class FinishReason(enum.StrEnum):
    STOP = "stop"  # end-of-sequence token or a stop string
    LENGTH = "length"  # max_tokens reached


class ChatMessage(msgspec.Struct, frozen=True):
    role: str
    content: str


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """A generation request on `llm.requests` (and, routed, on `llm.requests.<model>`)."""

    id: str
    reply_to: str
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    model: str = "auto"
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = msgspec.field(default_factory=list)
    seed: int | None = None
    timeout_ms: int | None = None
    deadline_ms: int | None = None
    priority: Priority = Priority.INTERACTIVE
    tenant: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int
    completion_tokens: int


class Timings(msgspec.Struct, frozen=True, kw_only=True):
    """Where the time went, in milliseconds, measured by the fleet."""

    queue_ms: float  # from intake at the router to the start of prefill
    ttft_ms: float  # from intake to the first token
    tpot_ms: float  # mean time per output token after the first
    total_ms: float  # from intake to the terminal event
    prefill_ms: float = 0.0
    spec_draft_tokens: int = 0  # speculative tokens proposed for this request
    spec_accepted_tokens: int = 0  # of which the target accepted
    spec_acceptance: float | None = None  # accepted / proposed; null when speculation did not run


class Chunk(msgspec.Struct, frozen=True, tag="chunk", tag_field="type", kw_only=True):
    id: str
    seq: int
    text: str
    run_id: str = ""  # identifies one generation run; a retried generation gets a new run_id


class Done(msgspec.Struct, frozen=True, tag="done", tag_field="type", kw_only=True):
    id: str
    seq: int
    text: str
    finish_reason: FinishReason
    model: str
    usage: Usage
    timings: Timings
    run_id: str = ""
    tier: str | None = None  # the tier "auto" chose (router header fleet-tier); null for a named model
    # the model asked for when the router sent the request on to a fallback (its breaker was open): `model`
    # is the one that served (router header fleet-requested-model); null when the asked-for model served
    requested_model: str | None = None
    degraded: bool = False  # no model served: the router's configured static reply (every model in the chain down)


class Error(msgspec.Struct, frozen=True, tag="error", tag_field="type", kw_only=True):
    id: str
    code: ErrorCode
    message: str
    retriable: bool = False
    seq: int | None = None
    run_id: str = ""
    # rate_limited: when a retry can pass; budget_exceeded: when the period rolls over
    retry_after_ms: int | None = None


ReplyEvent = Chunk | Done | Error


class Cancel(msgspec.Struct, frozen=True, tag="cancel", tag_field="type"):
    id: str


ControlMessage = Cancel


class WorkerStatus(msgspec.Struct, frozen=True, tag="worker_status", tag_field="type", kw_only=True):
    """Heartbeat a worker publishes on `llm.fleet.status`."""

    worker_id: str
    model: str
    ts_ms: int
    running: int
    waiting: int
    capacity: int
    state: str = "serving"  # serving | paused | draining
    weights_bytes: int = 0
    kv_cache_bytes: int = 0  # KV cache allocated now (it grows with the running batch)
    kv_budget_bytes: int = 0  # the most it may take: max_batch_tokens x bytes per token
    tokens_per_s: float = 0.0
    uncommitted: int = 0  # requests taken from Kafka and not yet committed (bounded by `capacity`)
    max_uncommitted: int = 0  # the most it has held at once since it started
    spec_draft_tokens: int = 0  # speculative tokens proposed since the worker started
    spec_accepted_tokens: int = 0  # of which the target accepted
    spec_acceptance: float | None = None  # accepted / proposed; null before speculation has run


class UsageRecord(msgspec.Struct, frozen=True, tag="usage", tag_field="type", kw_only=True):
    """One record per generation run that consumed tokens (done, length, cancelled, expired) on
    `llm.usage` (billing, dashboards); a reader that dedups by `run_id` counts each run once."""

    id: str
    model: str
    tenant: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: float
    ts_ms: int
    finish: str
    run_id: str | None = None  # the generation run: a reader counts each run once (a redo is another run)
    tier: str | None = None  # the tier "auto" chose; null for a named model
    # where the time went, in milliseconds, measured by the fleet as the `done` event's `timings` (from intake at the
    # router): latency per tenant and model outside the client. Null in records of older workers, and queue, TTFT
    # and TPOT null for a run that ended before its first token
    queue_ms: float | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    total_ms: float | None = None


class Progress(msgspec.Struct, frozen=True, tag="progress", tag_field="type", kw_only=True):
    """A request's generation so far, on the compacted `llm.progress` (key: tenant NUL `id`; a tombstone once it
    ended). The worker writes one when it starts a request and one with each chunk, before the chunk goes out;
    a worker that takes the request over continues from it under the same `run_id`, `seq` going on."""

    id: str
    model: str
    run_id: str
    seq: int = 0  # the next chunk's seq
    token_ids: list[int] = msgspec.field(default_factory=list)  # generated so far (prompt excluded)
    text: str = ""  # the text sent in chunks so far
    # lengths of chunks seq - len(resend) .. seq - 1, the tail of `text`, whose delivery the writer had not seen
    # confirmed (the ones this record covers among them): a new owner sends them again (clients drop a repeat)
    resend: list[int] = msgspec.field(default_factory=list)
    attempts: int = 0  # workers that started this request and did not let it go (a death, not a rebalance)
    prompt_tokens: int = 0
    finish: str | None = None  # set when the final events (tail chunk, done) were about to go out
    tenant: str | None = None
    # the model-topic record it belongs to ("<topic>:<partition>:<offset>"): a takeover resumes only a redelivery of
    # that record, never another request that happens to share the tenant and id
    source: str | None = None
