"""What the router does with one intake record: pure decision, no Kafka.

`decide()` returns a Forward (publish to a model topic) or a Reject (an error
event for the sender where one can be addressed, and a DLQ copy where the
input itself was bad).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from contracts.codec import Codec, ContentType, DecodeFailure, content_type_from_headers
from contracts.messages import ErrorCode, Request
from contracts.validation import InvalidRequest, check_size, routed_deadline_ms, validate_request
from fleet.settings import Settings
from router.classifier import choose_tier, features


@dataclass(frozen=True, slots=True)
class Forward:
    request: Request  # model resolved, deadline made absolute
    model: str
    tier: str | None
    score: float | None
    content_type: ContentType = ContentType.JSON  # as the sender encoded it; replies and the forward use it too


@dataclass(frozen=True, slots=True)
class Reject:
    code: ErrorCode
    message: str
    request_id: str | None  # where the error can be addressed, if at all
    reply_to: str | None
    to_dlq: bool  # bad input goes to the DLQ; operational refusals (expired, overloaded) do not
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class Duplicate:
    request_id: str


Decision = Forward | Reject | Duplicate


class Decider:
    def __init__(self, settings: Settings, codec: Codec) -> None:
        self._settings = settings
        self._codec = codec
        self._models = set(settings.model_names)
        self._tiers = {t.name: t for t in settings.router.tiers}
        t = settings.kafka.topics
        self._internal = {t.requests, t.dlq, t.control, t.status, t.usage}

    def is_internal_topic(self, name: str) -> bool:
        """A topic the fleet itself reads: replies never go there (with the shipped ACLs they would fail; without
        them an error event would land among requests, control messages or status reports)."""
        t = self._settings.kafka.topics
        return name in self._internal or name.startswith(t.requests + ".")

    def decide(
        self, value: bytes | None, headers: list[tuple[str, bytes | None]], timestamp_ms: int, now_ms: int
    ) -> Decision:
        """The verdict on one intake record. Never raises: an unexpected failure on these bytes is a refusal."""
        try:
            return self._decide(value, headers, timestamp_ms, now_ms)
        except Exception as exc:  # any input that trips the code is refused, never a crash or a skip
            salvaged = self._codec.salvage(value or b"", ContentType.JSON) if len(value or b"") < 4 << 20 else {}
            return Reject(
                ErrorCode.INVALID_REQUEST,
                f"request could not be processed: {type(exc).__name__}: {str(exc)[:200]}",
                salvaged.get("id"),
                salvaged.get("reply_to"),
                True,
                salvaged.get("encoding", "application/json"),
            )

    def _decide(
        self, value: bytes | None, headers: list[tuple[str, bytes | None]], timestamp_ms: int, now_ms: int
    ) -> Decision:
        try:
            ct = content_type_from_headers(headers)
        except DecodeFailure as exc:  # an unsupported content type: still answer the sender if we can
            salvaged = self._codec.salvage(value or b"", ContentType.JSON)
            return Reject(
                exc.code,
                exc.message,
                salvaged.get("id"),
                salvaged.get("reply_to"),
                True,
                salvaged.get("encoding", "application/json"),
            )
        try:
            check_size(value, self._settings.limits)
        except InvalidRequest as exc:  # before decoding: the reply and DLQ copy must not depend on the body
            salvaged = self._codec.salvage(value or b"", ct)
            return Reject(
                exc.code,
                exc.message,
                salvaged.get("id"),
                salvaged.get("reply_to"),
                True,
                salvaged.get("encoding", ct.value),
            )
        try:
            if not value:
                raise DecodeFailure(ErrorCode.INVALID_ENCODING, "empty message body")
            req = self._codec.decode_request(value, ct)
        except DecodeFailure as exc:
            return Reject(
                exc.code,
                exc.message,
                exc.salvaged.get("id"),
                exc.salvaged.get("reply_to"),
                True,
                exc.salvaged.get("encoding", "application/json"),
            )
        try:
            validate_request(req, self._settings.limits)
        except InvalidRequest as exc:
            return Reject(exc.code, exc.message, req.id or None, req.reply_to or None, True, ct.value)
        if self.is_internal_topic(req.reply_to):
            # refused without a reply: writing one there is what must not happen
            return Reject(
                ErrorCode.INVALID_REQUEST,
                f"`reply_to` {req.reply_to!r} is a topic of the fleet itself",
                req.id,
                None,
                True,
                ct.value,
            )
        deadline = routed_deadline_ms(req, timestamp_ms, now_ms, self._settings.limits.max_timeout_ms)
        if now_ms >= deadline:
            return Reject(
                ErrorCode.EXPIRED,
                f"deadline passed {now_ms - deadline} ms before routing",
                req.id,
                req.reply_to,
                False,
                ct.value,
            )
        tier_name: str | None = None
        score: float | None = None
        if req.model == "auto":
            score = features(req, self._settings.router.classify_max_chars).score
            tier = choose_tier(score, self._settings.router.tiers)
            model, tier_name = tier.model, tier.name
        elif req.model in self._models:
            model = req.model
        elif req.model in self._tiers:
            model, tier_name = self._tiers[req.model].model, req.model
        else:
            return Reject(
                ErrorCode.UNKNOWN_MODEL,
                f"unknown model {req.model[:100]!r}; known: {sorted(self._models)} or 'auto'",
                req.id,
                req.reply_to,
                True,
                ct.value,
            )
        routed = msgspec.structs.replace(req, model=model, deadline_ms=deadline, timeout_ms=None)
        return Forward(routed, model, tier_name, score, ct)
