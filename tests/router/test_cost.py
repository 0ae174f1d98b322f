"""The cost report (issue 14): what the traffic on `llm.usage` cost with routing against all of it on the largest
tier; the pure function, then the topic on a real broker through `fleet router cost`."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from typer.testing import CliRunner

from contracts import Codec
from contracts.messages import UsageRecord
from fleet.cli import app
from fleet.kafka import ProducerPurpose, ensure_topics, make_producer
from fleet.settings import Settings, load_settings
from router.cost import cost_report, read_usage, reference_model

S = Settings()  # small: 0.00005 / 0.0001 per 1k prompt / completion tokens; large: 0.0002 / 0.0004


@pytest.fixture(autouse=True)
def _keep_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI configures structlog to the stream it is given; under CliRunner that stream closes after the call
    and later log lines (the broker fixture's) would fail: keep the test session's logging as it is."""
    monkeypatch.setattr("fleet.logging.configure_logging", lambda *a, **k: None)


def usage(rid: str, model: str, prompt: int, completion: int, run: str, tier: str | None = None) -> UsageRecord:
    m = S.model(model)
    cost = (prompt * m.price_per_1k_prompt + completion * m.price_per_1k_completion) / 1000
    return UsageRecord(
        id=rid,
        model=model,
        tenant=None,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=round(cost, 8),
        ts_ms=1,
        finish="stop",
        run_id=run,
        tier=tier,
    )


RECORDS = [
    usage("a", "small", 1000, 1000, "r1", "simple"),
    usage("b", "small", 2000, 0, "r2", "simple"),
    usage("c", "large", 1000, 1000, "r3", "complex"),
    usage("a", "small", 1000, 1000, "r1", "simple"),  # a duplicate of r1 (at-least-once delivery)
    usage("d", "large", 0, 500, "r4"),  # a named model: no tier
]


def test_cost_with_routing_against_all_on_the_largest_tier() -> None:
    ref = reference_model(S)
    assert ref.name == "large"  # the last tier's model
    r = cost_report(RECORDS, ref)
    assert (r.runs, r.duplicates) == (4, 1)
    # routed: r1 0.00015 + r2 0.0001 + r3 0.0006 + r4 0.0002; all on large: r1 0.0006 + r2 0.0004 + r3 + r4
    assert r.routed_cost == pytest.approx(0.00105) and r.reference_cost == pytest.approx(0.0018)
    assert r.saving == pytest.approx(1 - 0.00105 / 0.0018)
    assert {m.model: m.runs for m in r.by_model} == {"small": 2, "large": 2}
    assert r.by_tier == {"simple": 2, "complex": 1, "-": 1}
    assert "saved: 41.7%" in r.text()
    assert cost_report([], ref).saving == 0.0


async def test_fleet_router_cost_reads_the_usage_topic_of_a_real_broker(broker: str) -> None:
    env = {"FLEET_KAFKA_BOOTSTRAP": broker, "FLEET_TOPIC_PREFIX": f"cost{uuid.uuid4().hex[:8]}"}
    s = load_settings(None, env=env)
    await ensure_topics(s, {s.kafka.topics.usage: 1})
    producer = make_producer(s, purpose=ProducerPurpose.USAGE)
    await producer.start()
    try:
        for rec in RECORDS:
            await producer.send_and_wait(s.kafka.topics.usage, Codec().encode(rec), key=rec.id.encode())
        await producer.send_and_wait(s.kafka.topics.usage, b"not a usage record")
    finally:
        await producer.stop()
    got = await read_usage(s, timeout_s=30)
    assert sorted(r.run_id or "" for r in got) == ["r1", "r1", "r2", "r3", "r4"]
    assert cost_report(got, reference_model(s)) == cost_report(RECORDS, reference_model(S))
    # the CLI runs its own event loop: off this one, in a thread
    result = await asyncio.to_thread(CliRunner().invoke, app, ["router", "cost"], env=env)
    assert result.exit_code == 0, result.output
    assert "saved: 41.7%" in result.output and "runs: 4 (duplicate records skipped: 1)" in result.output
    unknown = await asyncio.to_thread(CliRunner().invoke, app, ["router", "cost", "--reference", "xl"], env=env)
    assert unknown.exit_code == 2
