"""Dedup: a request whose (tenant, id) was forwarded within the window (or earlier in this batch) is dropped
as a duplicate. The tenant is the authenticated one (None without tenants configured)."""

from __future__ import annotations

from router.stages.base import Context, Continue, Drop, Verdict
from router.views import DedupView

DUPLICATE = "duplicate"


class Dedup:
    name = "dedup"

    def __init__(self, view: DedupView) -> None:
        self._view = view

    def __call__(self, ctx: Context) -> Verdict:
        assert ctx.request is not None, "dedup runs after decode"
        rid = ctx.request.id
        tenant = ctx.tenant.name if ctx.tenant is not None else None
        return Drop(DUPLICATE, rid) if self._view.seen(tenant, rid, ctx.now_ms) else Continue(ctx)
