"""The router's collector (router/metrics.py) over a real RouterService: records decided by its real pipeline
(`Sends.plan`), its real health view driving breakers, a real tenant account; read back through prometheus_client's
exposition and parser as a scrape would."""

from __future__ import annotations

import itertools
import time
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleet.metrics import MetricsSettings, Probes
from fleet.settings import ModelSettings, RouterSettings, Settings, TenantSettings, TierSettings
from router.accounts.account import Account
from router.metrics import RouterCollector, read_router, router_beat
from router.service import RouterService
from tests.router.scripted import json_record

PREFIX = "llm_fleet:"
Samples = dict[str, list[tuple[dict[str, str], float]]]


def settings() -> Settings:
    models = [ModelSettings(name=m, path="none", engine="simulated") for m in ("a", "b")]  # type: ignore[arg-type]
    tiers = [TierSettings(name="simple", model="a"), TierSettings(name="complex", model="b", max_score=float("inf"))]
    acme = TenantSettings(name="acme", daily_tokens=10_000, monthly_cost=5.0)
    r = RouterSettings(tiers=tiers, breaker_min_requests=2, breaker_error_rate=0.1)
    return Settings(models=models, router=r, tenants=[acme], metrics=MetricsSettings(enabled=True))


def scrape(registry: CollectorRegistry) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(s: Samples, name: str, **labels: str) -> float:
    return sum(v for ls, v in s.get(name, []) if all(ls.get(k) == x for k, x in labels.items()))


def collector_for(svc: RouterService) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(RouterCollector(svc.settings, lambda: read_router(svc)))
    return registry


def plan(svc: RouterService, offset: int, body: dict[str, Any]) -> None:
    """Decide one record with the service's pipeline and count its outcome as the loop does once its sends are
    acknowledged."""
    tp = TopicPartition(svc.settings.kafka.topics.tenant_intake("acme"), 0)  # the partition that owns its counters
    rec = json_record(tp, offset, body, [("content-type", b"application/json")])
    svc.stats.reached(svc.sends.plan(rec, int(time.time() * 1000)).decision)


def test_verdicts_and_counts_are_what_the_pipeline_decided() -> None:
    svc = RouterService(settings())
    svc.views.accounts.accounts["acme"] = Account.new(svc.settings.tenants[0], int(time.time() * 1000))
    registry = collector_for(svc)
    reply = "llm.replies.acme.x"
    for i in range(3):
        plan(svc, i, {"id": f"ok{i}", "reply_to": reply, "prompt": "hi", "model": "a", "max_tokens": 4})
    plan(svc, 3, {"id": "bad", "reply_to": reply, "prompt": "hi", "model": "nope"})
    s = scrape(registry)
    assert total(s, f"{PREFIX}router_forwarded_total") == 3
    assert total(s, f"{PREFIX}router_rejected_total") == 1
    verdicts = {(ls["stage"], ls["code"]): v for ls, v in s[f"{PREFIX}router_verdicts_total"]}
    assert sum(v for (_, code), v in verdicts.items() if code == "forward") == 3
    assert sum(verdicts.values()) == 4  # every record's verdict, once
    assert all("." not in stage for stage, _ in verdicts)
    assert total(s, f"{PREFIX}tenant_reservations", tenant="acme") == 3  # the budget stage reserved each forward
    # the forwards count in the load view's backlog until the next poll replaces it: no load read yet, no series
    assert f"{PREFIX}router_model_backlog" not in s or not s[f"{PREFIX}router_model_backlog"]


def test_breakers_export_their_state_and_count_each_transition_once() -> None:
    svc = RouterService(settings())
    registry = collector_for(svc)
    health = svc.views.health
    now = int(time.time() * 1000)
    health.workers("a", 2, 16, now)
    health.workers("b", 1, 8, now)
    s = scrape(registry)
    assert total(s, f"{PREFIX}router_breaker_state", model_name="a", state="closed") == 1
    assert total(s, f"{PREFIX}router_live_workers", model_name="a") == 2
    assert total(s, f"{PREFIX}router_model_capacity", model_name="b") == 8
    for i in range(3):  # model failures open a's breaker (poison in the DLQ)
        health.dead_letter("a", "poison", "acme", now + i)
    s = scrape(registry)
    assert total(s, f"{PREFIX}router_breaker_state", model_name="a", state="open") == 1
    assert total(s, f"{PREFIX}router_breaker_state", model_name="a", state="closed") == 0
    assert total(s, f"{PREFIX}router_breaker_transitions_total", model_name="a", to="open") == 1
    s = scrape(registry)  # a second scrape counts nothing twice
    assert total(s, f"{PREFIX}router_breaker_transitions_total", model_name="a", to="open") == 1
    health.tick(now + svc.settings.router.breaker_cooldown_ms + 10)  # cool-down over, live workers: half-open
    s = scrape(registry)
    assert total(s, f"{PREFIX}router_breaker_state", model_name="a", state="half_open") == 1
    assert total(s, f"{PREFIX}router_breaker_transitions_total", model_name="a") == 2


def test_owned_tenants_spend_against_budget_and_only_configured_tenants() -> None:
    svc = RouterService(settings())
    registry = collector_for(svc)
    tenant = svc.settings.tenants[0]
    account = Account.new(tenant, int(time.time() * 1000))
    account.state.ledger.day.tokens, account.state.ledger.month.cost = 1234, 0.5
    svc.views.accounts.accounts["acme"] = account
    s = scrape(registry)
    assert total(s, f"{PREFIX}tenant_spent_tokens", tenant="acme", period="day") == 1234
    assert total(s, f"{PREFIX}tenant_spent_cost", tenant="acme", period="month") == 0.5
    assert total(s, f"{PREFIX}tenant_budget_tokens", tenant="acme", period="day") == 10_000
    assert total(s, f"{PREFIX}tenant_budget_cost", tenant="acme", period="month") == 5.0
    assert f"{PREFIX}tenant_budget_tokens" in s and len(s[f"{PREFIX}tenant_budget_tokens"]) == 1  # no monthly
    tenants = {ls["tenant"] for name, samples in s.items() for ls, _ in samples if "tenant" in ls}
    assert tenants == {"acme"}


def test_a_service_the_adapter_cannot_read_fails_no_scrape() -> None:
    class Moved:  # what the service may look like mid-refactor: attributes gone
        settings = settings()

    registry = CollectorRegistry()
    registry.register(RouterCollector(Moved.settings, lambda: read_router(Moved())))
    s = scrape(registry)
    assert total(s, f"{PREFIX}router_metrics_read_failures_total") == 1
    s = scrape(registry)
    assert total(s, f"{PREFIX}router_metrics_read_failures_total") == 2


def test_readiness_waits_for_the_loop_and_the_load_view() -> None:
    svc = RouterService(settings())
    probes = Probes(svc.settings.metrics, read=lambda: router_beat(read_router(svc)))
    assert probes.live()[0] is False and probes.ready()[0] is False  # the loop has not turned
    svc._last_beat = time.monotonic()
    assert probes.live()[0] is True
    ok, body = probes.ready()
    assert not ok and "views not fed" in body["why"]
    for m in ("a", "b"):
        svc.views.load.update(m, 10, 7, time.monotonic())
    ok, body = probes.ready()
    assert ok and body["breakers"] == {"a": "closed", "b": "closed"}
    svc._last_beat = time.monotonic() - svc.settings.metrics.live_max_age_s - 1  # a loop that stopped turning
    assert probes.live()[0] is False and probes.ready()[0] is False


def test_forwards_by_model_and_tier_and_the_classification_time() -> None:
    """Issue 25: forwards by model and tier (tier "" where the request named its model), and a histogram of the
    time "auto" requests took to classify, one observation each (named and tier-named requests are not
    classified)."""
    svc = RouterService(settings())
    svc.views.accounts.accounts["acme"] = Account.new(svc.settings.tenants[0], int(time.time() * 1000))
    registry = collector_for(svc)
    assert total(scrape(registry), f"{PREFIX}router_classification_seconds_count") == 0  # exported, nothing yet
    reply = "llm.replies.acme.x"
    bodies = [{"model": "a"}, {"model": "simple"}, {"model": "complex"}, *({"model": "auto"} for _ in range(4))]
    for i, b in enumerate(bodies):
        plan(svc, i, {"id": f"r{i}", "reply_to": reply, "prompt": "write a haiku", "max_tokens": 4, **b})
    s = scrape(registry)
    forwards = {(ls["model_name"], ls["tier"]): v for ls, v in s[f"{PREFIX}router_forwards_total"]}
    assert forwards[("a", "")] == 1 and forwards[("b", "complex")] >= 1
    assert sum(forwards.values()) == len(bodies) == total(s, f"{PREFIX}router_forwarded_total")
    assert sum(v for (_, tier), v in forwards.items() if tier) == 6  # the tier named, or the tier auto chose
    name = f"{PREFIX}router_classification_seconds"
    assert total(s, name + "_count") == 4 and total(s, name + "_sum") > 0
    buckets = sorted((float(ls["le"]), v) for ls, v in s[name + "_bucket"])
    assert buckets[-1] == (float("inf"), 4) and all(a[1] <= b[1] for a, b in itertools.pairwise(buckets))


def test_timings_count_a_value_on_a_bound_at_or_below_it() -> None:
    from router.policies.timing import Timings

    t = Timings(bounds=(0.001, 0.01))
    for v in (0.0005, 0.001, 0.002, 0.5):
        t.observe(v)
    assert t.cumulative() == [("0.001", 2), ("0.01", 3), ("+Inf", 4)] and t.n == 4
    assert abs(t.total - 0.5035) < 1e-12
