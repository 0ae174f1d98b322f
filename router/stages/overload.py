"""Overload: refuse `overloaded` (retriable, no DLQ copy) when the chosen model's backlog is over its bound
or would not reach the request before its deadline (router/policies/overload.py decides)."""

from __future__ import annotations

from contracts.messages import ErrorCode
from router.policies.overload import LoadTracker
from router.stages.base import Context, Continue, Reject, Verdict


class Overload:
    name = "overload"

    def __init__(self, load: LoadTracker) -> None:
        self._load = load

    def __call__(self, ctx: Context) -> Verdict:
        req = ctx.request
        assert req is not None and ctx.model is not None, "overload runs after resolve_model"
        reason = self._load.refusal(ctx.model, req.deadline_ms, ctx.now_ms)
        if reason is None:
            return Continue(ctx)
        return Reject(ErrorCode.OVERLOADED, reason, req.id, req.reply_to, False, ctx.content_type.value)
