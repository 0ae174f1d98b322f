"""Validate: the request's fields against the limits, and a `reply_to` that is not a topic of the fleet."""

from __future__ import annotations

from contracts.messages import ErrorCode
from contracts.validation import InvalidRequest, validate_request
from fleet.settings import Settings
from router.stages.base import Context, Continue, Reject, Verdict


class InternalTopics:
    """Topics the fleet itself reads: replies never go there (with the shipped ACLs they would fail; without
    them an error event would land among requests, control messages or status reports)."""

    def __init__(self, settings: Settings) -> None:
        t = settings.kafka.topics
        self._names = {t.requests, t.dlq, t.control, t.status, t.usage}
        self._prefix = t.requests + "."

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._names or name.startswith(self._prefix))


class Validate:
    name = "validate"

    def __init__(self, settings: Settings, internal: InternalTopics) -> None:
        self._limits = settings.limits
        self._internal = internal

    def __call__(self, ctx: Context) -> Verdict:
        req = ctx.request
        assert req is not None, "validate runs after decode"
        ct = ctx.content_type.value
        try:
            validate_request(req, self._limits)
        except InvalidRequest as exc:
            return Reject(exc.code, exc.message, req.id or None, req.reply_to or None, True, ct)
        if req.reply_to in self._internal:  # refused without a reply: writing one there is what must not happen
            msg = f"`reply_to` {req.reply_to!r} is a topic of the fleet itself"
            return Reject(ErrorCode.INVALID_REQUEST, msg, req.id, None, True, ct)
        return Continue(ctx)
