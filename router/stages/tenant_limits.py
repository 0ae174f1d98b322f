"""Tenant limits: a tenant's `max_tokens` ceiling (a request asking for more is refused `invalid_request`,
saying the ceiling: clamping would return a shorter answer than asked without saying so; one that does not
say gets the ceiling where the contract's default is over it), and its defaults for what
the request leaves out: the priority, and the timeout when it has neither `timeout_ms` nor `deadline_ms`.
Runs before the deadline stage, which then makes the default timeout absolute. Rate limits and budgets
come after it as stages of their own (router/pipeline.py)."""

from __future__ import annotations

import msgspec

from contracts.codec import ContentType
from contracts.messages import ErrorCode
from router.stages.base import Context, Continue, Reject, Verdict


class _Given(msgspec.Struct):
    """Which of the fields with a contract default the body says (the decoded request cannot tell)."""

    priority: object = msgspec.UNSET
    max_tokens: object = msgspec.UNSET


_GIVEN_JSON = msgspec.json.Decoder(_Given)
_GIVEN_MSGPACK = msgspec.msgpack.Decoder(_Given)


def _given(value: bytes | None, ct: ContentType) -> _Given:
    try:
        return (_GIVEN_JSON if ct is ContentType.JSON else _GIVEN_MSGPACK).decode(value or b"")
    except (msgspec.DecodeError, ValueError, RecursionError):  # decoded once already: cannot happen, but be safe
        return _Given(priority=None, max_tokens=None)  # treated as said: nothing is changed


class TenantLimits:
    name = "tenant_limits"

    def __init__(self, *, active: bool = True) -> None:
        self.active = active  # False: no tenants configured (the default tenant has no limits or defaults)

    def __call__(self, ctx: Context) -> Verdict:
        req, t = ctx.request, ctx.tenant
        assert req is not None, "tenant_limits runs after decode"
        if t is None:
            return Continue(ctx)
        changes: dict[str, object] = {}
        over = t.max_tokens is not None and req.max_tokens > t.max_tokens
        wants_priority = t.default_priority is not None and req.priority != t.default_priority
        given = _given(ctx.value, ctx.content_type) if over or wants_priority else None
        if over:
            assert t.max_tokens is not None and given is not None
            if given.max_tokens is msgspec.UNSET:  # the contract's default, not the sender's ask: fit it
                changes["max_tokens"] = t.max_tokens
            else:
                msg = f"`max_tokens` is {req.max_tokens}; tenant {t.name!r}'s ceiling is {t.max_tokens}"
                return Reject(
                    ErrorCode.INVALID_REQUEST,
                    msg,
                    req.id,
                    req.reply_to,
                    to_dlq=True,
                    content_type=ctx.content_type.value,
                )
        if wants_priority and given is not None and given.priority is msgspec.UNSET:
            changes["priority"] = t.default_priority
        if t.default_timeout_ms is not None and req.timeout_ms is None and req.deadline_ms is None:
            changes["timeout_ms"] = t.default_timeout_ms
        if not changes:
            return Continue(ctx)
        return Continue(msgspec.structs.replace(ctx, request=msgspec.structs.replace(req, **changes)))
