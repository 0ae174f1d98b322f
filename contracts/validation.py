"""Semantic validation of a decoded request, with messages a person can act on."""

from __future__ import annotations

import math
import re
from typing import Annotated

import msgspec

from contracts.errors import FleetError
from contracts.messages import ErrorCode, Request

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def is_topic_name(name: str) -> bool:
    """A legal Kafka topic name (the fleet can address a reply there)."""
    return bool(_TOPIC.match(name))


_ROLES = frozenset({"system", "user", "assistant", "tool"})


_Count = Annotated[int, msgspec.Meta(ge=1)]  # a limit of at least one (0 would refuse every request)


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_id_chars: _Count = 200
    max_tokens_ceiling: _Count = 2048
    max_prompt_chars: _Count = 32_000
    max_stop_sequences: Annotated[int, msgspec.Meta(ge=0)] = 16
    max_stop_chars: _Count = 256
    max_messages: _Count = 256
    max_metadata_bytes: _Count = 16_384
    max_metadata_depth: _Count = 16
    # the whole encoded request as it arrives: checked before decoding, so an oversized record is refused
    # (and its DLQ copy truncated) instead of failing the forward; leaves room under Kafka's 1 MiB default
    max_request_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 524_288
    max_tenant_chars: _Count = 128
    max_model_chars: _Count = 100
    max_message_role_chars: _Count = 32
    # a deadline further out than this is refused (`timeout_ms`) or capped (`deadline_ms`, whose clock is the
    # producer's): a client clock an hour ahead buys no hour, and no arithmetic on it can overflow
    max_timeout_ms: _Count = 900_000
    # sampling at 0 < temperature < this divides logits by a number so small that probabilities turn NaN
    min_temperature: Annotated[float, msgspec.Meta(gt=0, le=2)] = 1e-2


class InvalidRequest(FleetError):
    """A request that decodes but breaks a rule of the contract or a configured limit."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message, code=code.value)
        self.code: ErrorCode = code  # the wire code (a str enum, so still a str)


def _fail(message: str, code: ErrorCode = ErrorCode.INVALID_REQUEST) -> InvalidRequest:
    return InvalidRequest(code, message)


def prompt_chars(req: Request) -> int:
    if req.prompt is not None:
        return len(req.prompt)
    return sum(len(m.content) for m in req.messages or ())


# JSON's value types, which every field of a request must re-encode to (msgpack can carry more: Ext,
# binary, non-string keys; none of those survive a forward in JSON or reach the worker meaningfully)
_JSON_SCALARS = (str, bool, int, float, type(None))
_INT_RANGE = 2**63  # msgspec encodes ints within int64/uint64; anything wider cannot be forwarded


def check_size(data: bytes | None, limits: Limits) -> None:
    """Refuse a body over the size limit before anything decodes or re-encodes it."""
    if data is not None and len(data) > limits.max_request_bytes:
        raise _fail(f"request is {len(data)} bytes; the limit is {limits.max_request_bytes}")


def validate_request(req: Request, limits: Limits) -> None:
    """Raise InvalidRequest with a specific code and message, or return None.

    Every check here runs before the request is re-encoded, and together they guarantee that it can be
    (JSON types only, bounded sizes, integers in range)."""
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
            if len(m.role) > limits.max_message_role_chars or m.role not in _ROLES:
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
    if 0.0 < req.temperature < limits.min_temperature:
        raise _fail(f"`temperature` must be 0 (greedy) or at least {limits.min_temperature}, got {req.temperature}")
    if not math.isfinite(req.top_p) or not 0.0 < req.top_p <= 1.0:
        raise _fail(f"`top_p` must be in (0, 1], got {req.top_p}")
    if req.seed is not None and not 0 <= req.seed < 2**63:
        raise _fail("`seed` must be between 0 and 2**63-1")
    if len(req.stop) > limits.max_stop_sequences:
        raise _fail(f"`stop` has {len(req.stop)} entries; the limit is {limits.max_stop_sequences}")
    for s in req.stop:
        if not s or len(s) > limits.max_stop_chars:
            raise _fail(f"each `stop` entry must be 1-{limits.max_stop_chars} characters")
    if req.timeout_ms is not None and not 0 < req.timeout_ms <= limits.max_timeout_ms:
        raise _fail(f"`timeout_ms` must be between 1 and {limits.max_timeout_ms}, got {req.timeout_ms}")
    if req.deadline_ms is not None and not 0 < req.deadline_ms < _MAX_EPOCH_MS:
        raise _fail(f"`deadline_ms` must be a positive epoch time in ms, got {req.deadline_ms}")
    if len(req.model) > limits.max_model_chars:
        raise _fail(f"`model` is {len(req.model)} characters; the limit is {limits.max_model_chars}")
    if req.tenant is not None and len(req.tenant) > limits.max_tenant_chars:
        raise _fail(f"`tenant` is {len(req.tenant)} characters; the limit is {limits.max_tenant_chars}")
    if req.metadata:
        # type and depth first: encoding a value that is not JSON would raise, not measure
        problem = _not_json(req.metadata, limits.max_metadata_depth)
        if problem and problem.startswith("nests"):
            problem = f"nests deeper than {limits.max_metadata_depth} levels"
        if problem:
            raise _fail(f"`metadata` {problem}")
        if len(msgspec.json.encode(req.metadata)) > limits.max_metadata_bytes:
            raise _fail(f"`metadata` is over {limits.max_metadata_bytes} bytes encoded")


_MAX_EPOCH_MS = 253_402_300_800_000  # 10000-01-01: any later "deadline" is not a time


def _not_json(obj: object, depth_left: int, path: str = "$") -> str | None:
    """Why `obj` (a decoded metadata value) is not plain JSON within the depth bound, or None."""
    if isinstance(obj, dict):
        if depth_left <= 0:
            return "nests deeper than the limit"
        for k, v in obj.items():
            if not isinstance(k, str):
                return f"has a key of type {type(k).__name__} at {path}; keys must be strings"
            problem = _not_json(v, depth_left - 1, f"{path}.{k[:40]}")
            if problem:
                return problem
        return None
    if isinstance(obj, list):
        if depth_left <= 0:
            return "nests deeper than the limit"
        for i, v in enumerate(obj):
            problem = _not_json(v, depth_left - 1, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if not isinstance(obj, _JSON_SCALARS):
        return f"holds a value of type {type(obj).__name__} at {path}; only JSON types are allowed"
    if isinstance(obj, int) and not isinstance(obj, bool) and not -_INT_RANGE <= obj < _INT_RANGE:
        return f"holds an integer out of the 64-bit range at {path}"
    if isinstance(obj, float) and not math.isfinite(obj):
        return f"holds a non-finite number at {path}"
    return None


def effective_deadline_ms(req: Request, sent_ms: int) -> int | None:
    """Absolute deadline (epoch ms): the earlier of `deadline_ms` and send time + `timeout_ms`."""
    candidates = [d for d in (req.deadline_ms, sent_ms + req.timeout_ms if req.timeout_ms else None) if d]
    return min(candidates) if candidates else None


def routed_deadline_ms(req: Request, sent_ms: int, received_ms: int, max_timeout_ms: int) -> int:
    """The deadline the fleet enforces, on the receiver's clock.

    `sent_ms` (the record's timestamp) comes from the producer's clock: it counts only where it is not in
    the future, so a clock running ahead buys nothing. Whatever the request asks, the result is at most
    `max_timeout_ms` after receipt, and a request without a deadline gets exactly that bound."""
    base = min(sent_ms, received_ms) if sent_ms > 0 else received_ms
    cap = received_ms + max_timeout_ms
    asked = effective_deadline_ms(req, base)
    return cap if asked is None else min(asked, cap)
