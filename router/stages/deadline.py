"""Deadline: the request's deadline made absolute (its `timeout_ms` from the record's timestamp, capped by
`max_timeout_ms` from now); a request whose deadline already passed is refused `expired`, without a DLQ copy."""

from __future__ import annotations

import msgspec

from contracts.messages import ErrorCode
from contracts.validation import routed_deadline_ms
from fleet.settings import Settings
from router.stages.base import Context, Continue, Reject, Verdict


class Deadline:
    name = "deadline"

    def __init__(self, settings: Settings) -> None:
        self._max_timeout_ms = settings.limits.max_timeout_ms

    def __call__(self, ctx: Context) -> Verdict:
        req = ctx.request
        assert req is not None, "deadline runs after decode"
        now = ctx.now_ms
        deadline = routed_deadline_ms(req, ctx.timestamp_ms, now, self._max_timeout_ms)
        if now >= deadline:
            msg = f"deadline passed {now - deadline} ms before routing"
            return Reject(
                ErrorCode.EXPIRED, msg, req.id, req.reply_to, to_dlq=False, content_type=ctx.content_type.value
            )
        routed = msgspec.structs.replace(req, deadline_ms=deadline, timeout_ms=None)
        return Continue(msgspec.structs.replace(ctx, request=routed))
