"""Overload: refuse `overloaded` (retriable, no DLQ copy) when the chosen model's backlog is over its bound
or would not reach the request before its deadline (router/policies/overload.py decides). The backlog is the
interactive lane's; batch requests are not refused for it: a batch backlog is what the batch lane is for,
and a batch request that waits past its deadline is answered `expired` by the worker."""

from __future__ import annotations

from contracts.messages import ErrorCode, Priority
from router.policies.overload import LoadTracker
from router.stages.base import Context, Continue, Reject, Verdict
from router.views import HealthView


class Overload:
    name = "overload"

    def __init__(self, load: LoadTracker, health: HealthView | None = None) -> None:
        self._load = load
        self._health = health  # each model's live capacity (router/feeds.py feed_health)

    def __call__(self, ctx: Context) -> Verdict:
        req = ctx.request
        assert req is not None and ctx.model is not None, "overload runs after resolve_model"
        if req.priority is Priority.BATCH:
            return Continue(ctx)
        capacity = self._health.capacity.get(ctx.model, 0) if self._health is not None else 0
        reason = self._load.refusal(ctx.model, req.deadline_ms, ctx.now_ms, capacity)
        if reason is None:
            return Continue(ctx)
        return Reject(
            ErrorCode.OVERLOADED, reason, req.id, req.reply_to, to_dlq=False, content_type=ctx.content_type.value
        )
