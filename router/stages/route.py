"""Route: the last stage; forward the request to its model's topic: the interactive lane, or the batch lane
for `priority: batch` (workers take batch work only with spare capacity)."""

from __future__ import annotations

from contracts.messages import Priority
from contracts.topics import Topics
from router.stages.base import Context, Forward, Verdict


class Route:
    name = "route"

    def __init__(self, topics: Topics) -> None:
        self._topics = topics
        self._lanes: dict[tuple[str, bool], tuple[str, ...]] = {}  # (model, batch) -> its topics (checked names)

    def __call__(self, ctx: Context) -> Verdict:
        req = ctx.request
        assert req is not None and ctx.model is not None, "route runs after resolve_model"
        lane = (ctx.model, req.priority is Priority.BATCH)
        topics = self._lanes.get(lane)
        if topics is None:  # resolve_model chose a configured model: a handful of entries
            topics = (self._topics.model_batch(ctx.model) if lane[1] else self._topics.model(ctx.model),)
            self._lanes[lane] = topics
        return Forward(ctx, topics)
