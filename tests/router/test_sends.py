"""router/sends.py: the forward of an "auto" request is explained in the log at debug (score, tier, the signals
behind the score) and costs nothing below debug."""

from __future__ import annotations

import time

import pytest
from aiokafka import TopicPartition
from structlog.testing import capture_logs

from contracts import Codec
from contracts.topics import Headers
from fleet.settings import Settings
from router.pipeline import Pipeline, build_pipeline
from router.sends import RouterStats, SendKind, Sends
from router.stages.base import Forward
from router.views import Views
from tests.router.scripted import json_record

TASK = "Implement a thread-safe LRU cache in Go with per-entry TTL and explain the locking trade-offs."


def sends_for(settings: Settings) -> Sends:
    codec = Codec()
    views = Views.from_settings(settings, int(time.time() * 1000))
    return Sends(settings, Pipeline(build_pipeline(settings, views, codec), codec), codec, RouterStats())


@pytest.mark.parametrize("level", ["debug", "info"])
def test_each_auto_forward_is_logged_with_its_score_tier_and_signals_at_debug_only(level: str) -> None:
    sends = sends_for(Settings(log_level=level))
    now = int(time.time() * 1000)
    rec = json_record(
        TopicPartition("llm.requests", 0), 7, {"id": "a1", "reply_to": "llm.replies.x", "prompt": TASK}, [], now
    )
    with capture_logs() as logs:
        plan = sends.plan(rec, now)
    assert isinstance(plan.decision, Forward) and plan.decision.tier == "complex"
    assert [s.kind for s in plan.sends] == [SendKind.FORWARD]
    assert (Headers.TIER, b"complex") in plan.sends[0].headers
    forwards = [e for e in logs if e["event"] == "router.forward"]
    if level == "info":
        assert forwards == [] and plan.decision.signals == ()  # not even computed
        return
    (line,) = forwards
    assert line["request_id"] == "a1" and line["model"] == "large" and line["tier"] == "complex"
    assert line["score"] == plan.decision.score and 0.0 <= line["score"] <= 1.0
    assert len(line["signals"]) == 4 and line["signals"] == plan.decision.signals
