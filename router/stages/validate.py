"""Validate: the request's fields against the limits, and where its reply may go: never a topic of the
fleet itself, and, with tenants configured, only under one of the tenant's reply prefixes (`forbidden`,
with a DLQ copy, otherwise)."""

from __future__ import annotations

from contracts.messages import ErrorCode
from contracts.validation import InvalidRequest, validate_request
from fleet.settings import Settings
from router.policies.tenants import Tenants
from router.stages.base import Context, Continue, Reject, Verdict


class InternalTopics:
    """Topics of the fleet's own namespace that are not reply topics (contracts/topics.py `is_fleet_topic`):
    intake (shared and per tenant), model topics, DLQ, control, status, usage and what later issues add.
    Replies never go there (with the shipped ACLs they would fail; without them an error event would land
    among requests, control messages or status reports)."""

    def __init__(self, settings: Settings) -> None:
        self._topics = settings.kafka.topics

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._topics.is_fleet_topic(name)


class Validate:
    name = "validate"

    def __init__(self, settings: Settings, internal: InternalTopics, tenants: Tenants) -> None:
        self._limits = settings.limits
        self._internal = internal
        self._tenants = tenants

    def __call__(self, ctx: Context) -> Verdict:
        req = ctx.request
        assert req is not None, "validate runs after decode"
        ct = ctx.content_type.value
        try:
            validate_request(req, self._limits)
        except InvalidRequest as exc:
            return Reject(exc.code, exc.message, req.id or None, req.reply_to or None, to_dlq=True, content_type=ct)
        if req.reply_to in self._internal:  # refused without a reply: writing one there is what must not happen
            msg = f"`reply_to` {req.reply_to!r} is a topic of the fleet itself"
            return Reject(ErrorCode.FORBIDDEN, msg, req.id, None, to_dlq=True, content_type=ct)
        t = ctx.tenant
        if t is not None and not self._tenants.reply_allowed(t, req.reply_to):
            # no reply either: the topic may be another tenant's, and an error event there is a message to it
            prefixes = list(self._tenants.reply_prefixes(t))
            msg = f"`reply_to` {req.reply_to!r} is not under tenant {t.name!r}'s reply prefixes {prefixes}"
            return Reject(ErrorCode.FORBIDDEN, msg, req.id, None, to_dlq=True, content_type=ct)
        return Continue(ctx)
