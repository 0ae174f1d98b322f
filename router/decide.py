"""The router's decision on one record's bytes alone: the pipeline's request stages (decode, validate,
deadline, resolve_model) without the views, ending in a Forward to the model or a Reject. For tests and
tools that need the verdict on some bytes; the router itself runs the whole pipeline (router/pipeline.py).
"""

from __future__ import annotations

from contracts.codec import Codec
from fleet.records import Header
from fleet.settings import Settings
from router.pipeline import Pipeline, request_stages
from router.stages.base import Context, Forward, Outcome, Reject
from router.stages.route import Route

__all__ = ["Decider", "Forward", "Reject"]


class Decider:
    def __init__(self, settings: Settings, codec: Codec) -> None:
        self._pipeline = Pipeline([*request_stages(settings, codec), Route(settings.kafka.topics)], codec)

    def decide(self, value: bytes | None, headers: list[Header], timestamp_ms: int, now_ms: int) -> Outcome:
        """The verdict on one intake record. Never raises."""
        return self._pipeline.run(Context(value, headers, timestamp_ms, now_ms))[1]
