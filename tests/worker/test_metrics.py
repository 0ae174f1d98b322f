"""The worker's metrics (worker/metrics.py) on the real engine driver and the simulated engine, read back
through prometheus_client's own exposition and parser: what a scrape says equals what the driver handed out."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from contracts.codec import Codec
from contracts.messages import Done
from fleet.settings import ModelSettings, Quantization, Settings
from worker.commits import Commits
from worker.engine.api import EngineStats
from worker.engine.simulated import SimulatedEngine
from worker.metrics import WorkerMetrics
from worker.outbox import Outbox
from worker.replies import Replies

from .test_driver import Seen, add, driver_for, request, run_until_idle

PREFIX = "test_fleet:"


def scrape(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    """sample name -> [(labels, value)] from the registry's text exposition, parsed by prometheus_client."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for ls, v in samples.get(name, []) if all(ls.get(k) == x for k, x in labels.items()))


def model() -> ModelSettings:
    return ModelSettings(
        name="m", path="none", quantization=Quantization.NF4, price_per_1k_prompt=1.0, price_per_1k_completion=2.0
    )


async def test_a_scrape_counts_what_the_driver_handed_out() -> None:
    registry = CollectorRegistry()
    m = WorkerMetrics(registry, PREFIX, model(), "w-1", 4096, tenants=["acme"], tiers=["simple"])
    driver = driver_for(SimulatedEngine(tokens_per_s=2000.0, max_running=4))
    driver.observer = m
    m.attach(driver=driver)
    seen = Seen()
    ids = [add(driver, request(f"r{i}", f"prompt number {i}", max_tokens=3 + i, tenant="acme")) for i in range(5)]
    add(driver, request("x", "someone else", max_tokens=2, tenant="mallory"))  # not configured: "other"
    await run_until_idle(driver, seen)
    done = [t for rid in [*(f"r{i}" for i in range(5)), "x"] if isinstance(t := seen.terminal(rid), Done)]
    assert len(done) == 6 and len(ids) == 5
    s = scrape(registry)
    labels = {"model_name": "m", "quantization": "nf4", "worker_id": "w-1"}
    assert total(s, f"{PREFIX}request_success_total", finished_reason="length", **labels) == 6
    assert total(s, f"{PREFIX}generation_tokens_total") == sum(d.usage.completion_tokens for d in done)
    assert total(s, f"{PREFIX}prompt_tokens_total") == sum(d.usage.prompt_tokens for d in done)
    for h in (
        "time_to_first_token_seconds",
        "e2e_request_latency_seconds",
        "request_queue_time_seconds",
        "request_prefill_time_seconds",
        "request_decode_time_seconds",
        "request_generation_tokens",
        "request_time_per_output_token_seconds",
    ):
        assert total(s, f"{PREFIX}{h}_count", **labels) == 6, h
    # one inter-token observation per step after a request's first token
    assert total(s, f"{PREFIX}inter_token_latency_seconds_count") == sum(d.usage.completion_tokens - 1 for d in done)
    assert total(s, f"{PREFIX}request_generation_tokens_sum") == sum(d.usage.completion_tokens for d in done)
    # every series carries the worker's labels (and only the named extra ones)
    for name, samples in s.items():
        if name.startswith(PREFIX):
            for ls, _ in samples:
                assert {k: ls[k] for k in labels} == labels, name
                assert set(ls) - set(labels) <= {"le", "finished_reason", "tenant", "tier", "code", "outbox"}, name
    acme = [d for d in done if d.id.startswith("r")]
    assert total(s, f"{PREFIX}tenant_requests_total", tenant="acme", tier="") == 5
    assert total(s, f"{PREFIX}tenant_requests_total", tenant="other") == 1
    assert total(s, f"{PREFIX}tenant_generation_tokens_total", tenant="acme") == sum(
        d.usage.completion_tokens for d in acme
    )
    cost = sum(d.usage.prompt_tokens * 1.0 + d.usage.completion_tokens * 2.0 for d in acme) / 1000
    assert abs(total(s, f"{PREFIX}tenant_cost_total", tenant="acme") - cost) < 1e-9
    assert total(s, f"{PREFIX}engine_step_failures_total") == 0


async def test_cancelled_requests_count_by_their_reason_without_decode_times() -> None:
    registry = CollectorRegistry()
    m = WorkerMetrics(registry, PREFIX, model(), "w-1", 4096)
    driver = driver_for(SimulatedEngine(tokens_per_s=50.0, max_running=1))
    driver.observer = m
    seen = Seen()
    add(driver, request("long", "a long one", max_tokens=1000))
    add(driver, request("queued", "never runs", max_tokens=5))  # waits behind the first: cancelled before a token
    seen.take(await driver.step())
    seen.take(driver.cancel("queued"))
    seen.take(driver.cancel("long"))
    await run_until_idle(driver, seen)
    s = scrape(registry)
    assert total(s, f"{PREFIX}request_success_total", finished_reason="cancelled") == 2
    assert total(s, f"{PREFIX}e2e_request_latency_seconds_count") == 2
    assert total(s, f"{PREFIX}request_decode_time_seconds_count") == 1  # only the one that had tokens
    assert total(s, f"{PREFIX}tenant_requests_total", tenant="default") == 2  # no tenants configured


def test_scrape_time_values_come_from_the_engine_stats_and_the_services_counts() -> None:
    registry = CollectorRegistry()
    mdl = model()
    m = WorkerMetrics(registry, PREFIX, mdl, "w-1", 4096)
    s = scrape(registry)
    assert f"{PREFIX}num_requests_running" not in s  # no engine stats read yet: no made-up zeros
    reserved = {"kv_reserved_tokens": mdl.max_batch_tokens / 4}
    m.engine = EngineStats(
        running=3, waiting=2, max_running=8, spec_draft_tokens=40, spec_accepted_tokens=30, extra=reserved
    )

    settings = Settings(models=[mdl])
    replies_box = Outbox(None, settings.worker, name="replies", known_topic="status")  # type: ignore[arg-type]
    usage_box = Outbox(None, settings.worker, name="usage", known_topic="status")  # type: ignore[arg-type]
    usage_box.retries, usage_box.undeliverable, replies_box.undeliverable = 2, 1, 1
    commits = Commits(None, settings.worker)  # type: ignore[arg-type]
    replies = Replies(settings, mdl, replies_box, usage_box, commits, Codec())
    replies.refused.update({"poison": 1, "invalid_request": 3})
    m.attach(outboxes={"replies": replies_box, "usage": usage_box}, replies=replies, commits=commits)
    s = scrape(registry)
    assert total(s, f"{PREFIX}num_requests_running") == 3
    assert total(s, f"{PREFIX}num_requests_waiting") == 2
    assert total(s, f"{PREFIX}kv_cache_usage_perc") == 0.25
    assert total(s, f"{PREFIX}spec_decode_num_draft_tokens_total") == 40
    assert total(s, f"{PREFIX}spec_decode_num_accepted_tokens_total") == 30
    assert total(s, f"{PREFIX}outbox_send_retries_total", outbox="usage") == 2
    assert total(s, f"{PREFIX}outbox_undeliverable_total") == 2
    assert total(s, f"{PREFIX}requests_refused_total", code="poison") == 1
    assert total(s, f"{PREFIX}num_requests_uncommitted") == 0
