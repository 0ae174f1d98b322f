"""Semantic validation of a decoded request, with messages a person can act on."""

from __future__ import annotations

import math
import re

import msgspec

from contracts.messages import ErrorCode, Request

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def is_topic_name(name: str) -> bool:
    """A legal Kafka topic name (the fleet can address a reply there)."""
    return bool(_TOPIC.match(name))


_ROLES = frozenset({"system", "user", "assistant", "tool"})


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_id_chars: int = 200
    max_tokens_ceiling: int = 2048
    max_prompt_chars: int = 32_000
    max_stop_sequences: int = 16
    max_stop_chars: int = 256
    max_messages: int = 256
    max_metadata_bytes: int = 16_384
    max_metadata_depth: int = 16


class InvalidRequest(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _fail(message: str, code: ErrorCode = ErrorCode.INVALID_REQUEST) -> InvalidRequest:
    return InvalidRequest(code, message)


def prompt_chars(req: Request) -> int:
    if req.prompt is not None:
        return len(req.prompt)
    return sum(len(m.content) for m in req.messages or ())


def validate_request(req: Request, limits: Limits) -> None:
    """Raise InvalidRequest with a specific code and message, or return None."""
    if not req.id or not req.id.strip():
        raise _fail("`id` must be a non-empty string")
    if len(req.id) > limits.max_id_chars:
        raise _fail(f"`id` is {len(req.id)} characters; the limit is {limits.max_id_chars}")
    if not is_topic_name(req.reply_to):
        raise _fail("`reply_to` must be a Kafka topic name: 1-249 characters of [A-Za-z0-9._-]")
    if (req.prompt is None) == (req.messages is None):
        raise _fail("exactly one of `prompt` and `messages` must be given")
    if req.messages is not None:
        if not req.messages:
            raise _fail("`messages` must not be empty")
        if len(req.messages) > limits.max_messages:
            raise _fail(f"`messages` has {len(req.messages)} entries; the limit is {limits.max_messages}")
        for i, m in enumerate(req.messages):
            if m.role not in _ROLES:
                raise _fail(f"`messages[{i}].role` is {m.role[:40]!r}; expected one of {sorted(_ROLES)}")
    chars = prompt_chars(req)
    if chars > limits.max_prompt_chars:
        raise _fail(f"prompt is {chars} characters; the limit is {limits.max_prompt_chars}", ErrorCode.PROMPT_TOO_LONG)
    if req.max_tokens < 1:
        raise _fail(f"`max_tokens` must be at least 1, got {req.max_tokens}")
    if req.max_tokens > limits.max_tokens_ceiling:
        raise _fail(f"`max_tokens` is {req.max_tokens}; the ceiling is {limits.max_tokens_ceiling}")
    if not math.isfinite(req.temperature) or not 0.0 <= req.temperature <= 2.0:
        raise _fail(f"`temperature` must be between 0 and 2, got {req.temperature}")
    if not math.isfinite(req.top_p) or not 0.0 < req.top_p <= 1.0:
        raise _fail(f"`top_p` must be in (0, 1], got {req.top_p}")
    if req.seed is not None and not 0 <= req.seed < 2**63:
        raise _fail("`seed` must be between 0 and 2**63-1")
    if len(req.stop) > limits.max_stop_sequences:
        raise _fail(f"`stop` has {len(req.stop)} entries; the limit is {limits.max_stop_sequences}")
    for s in req.stop:
        if not s or len(s) > limits.max_stop_chars:
            raise _fail(f"each `stop` entry must be 1-{limits.max_stop_chars} characters")
    if req.timeout_ms is not None and req.timeout_ms <= 0:
        raise _fail(f"`timeout_ms` must be positive, got {req.timeout_ms}")
    if req.deadline_ms is not None and req.deadline_ms <= 0:
        raise _fail(f"`deadline_ms` must be a positive epoch time in ms, got {req.deadline_ms}")
    if req.metadata and len(msgspec.json.encode(req.metadata)) > limits.max_metadata_bytes:
        raise _fail(f"`metadata` is over {limits.max_metadata_bytes} bytes encoded")
    if req.metadata and _depth(req.metadata, limits.max_metadata_depth + 1) > limits.max_metadata_depth:
        raise _fail(f"`metadata` nests deeper than {limits.max_metadata_depth} levels")


def _depth(obj: object, cap: int) -> int:
    """Nesting depth of a decoded JSON value, counting no further than `cap`."""
    if cap <= 0 or not isinstance(obj, dict | list):
        return 0
    children = obj.values() if isinstance(obj, dict) else obj
    return 1 + max((_depth(c, cap - 1) for c in children), default=0)


def effective_deadline_ms(req: Request, sent_ms: int) -> int | None:
    """Absolute deadline (epoch ms): the earlier of `deadline_ms` and send time + `timeout_ms`."""
    candidates = [d for d in (req.deadline_ms, sent_ms + req.timeout_ms if req.timeout_ms else None) if d]
    return min(candidates) if candidates else None
