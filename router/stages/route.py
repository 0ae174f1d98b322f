"""Route: the last stage; forward the request to its model's topic."""

from __future__ import annotations

from contracts.topics import Topics
from router.stages.base import Context, Forward, Verdict


class Route:
    name = "route"

    def __init__(self, topics: Topics) -> None:
        self._topics = topics

    def __call__(self, ctx: Context) -> Verdict:
        req = ctx.request
        assert req is not None and ctx.model is not None, "route runs after resolve_model"
        tenant = ctx.tenant.name if ctx.tenant is not None else None
        topics = (self._topics.model(ctx.model),)
        return Forward(req, ctx.model, ctx.tier, ctx.score, ctx.content_type, topics, tenant, ctx.signals)
