"""The router's Prometheus metrics and health probes, read at scrape time from what the router already counts.

Nothing here runs on the router's hot path: a scrape (on the metrics server's thread, fleet/metrics.py) calls
`read_router`, which copies the service's counters and views, and `RouterCollector` turns that copy into
metrics. `read_router` is the one place that knows where `RouterService` keeps them (`stats`, `counts`,
`views.health`, `views.load`, `views.accounts`): a refactor of the service changes that function only.

Labels are bounded: a model label only for configured models, a tenant label only for configured tenants
(accounts exist only for them), stage and code from the pipeline's own fixed sets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from fleet.metrics import Beat, MetricsServer, Probes, new_registry, serve
from fleet.settings import Settings
from router.accounts.budget import day_key, month_key

log = structlog.get_logger(__name__)

BREAKER_STATES = ("closed", "open", "half_open")

# HELP text of the router's plain counters (RouterService.counts); a count not named here is exported too
COUNT_HELP = {
    "consumed": "Intake records read (a redo reads a record again).",
    "forwarded": "Requests forwarded to a model topic.",
    "rejected": "Requests refused (an error event and a DLQ copy).",
    "duplicates": "Requests dropped as duplicates of one forwarded within the dedup window.",
    "overloaded": "Requests refused `overloaded`.",
    "dlq": "DLQ copies written.",
    "undeliverable": "Refusals that could not be written to their reply_to (recorded in the DLQ).",
    "redone": "Batches sought back after a retriable send failure.",
    "committed": "Intake records whose offsets the broker committed.",
    "commits_dropped": "Commits refused after a rebalance (the partition's new owner redoes them).",
    "answered": "Replies the router sent itself (degraded answers).",
    "moved": "Records sent on to the router that owns their tenant's counters.",
    "held": "Batch requests held for their tenant's rate.",
    "undecodable": "Intake batches nothing could decode (copied raw to the DLQ).",
    "tenant_snapshots": "Tenant counter snapshots written.",
    "tenant_snapshot_failures": "Tenant counter snapshots that failed.",
    "settled": "Usage records settled against a tenant's reservation.",
    "usage_not_signed": "Usage records passed over: not signed by a worker.",
}


@dataclass
class RouterState:
    """A copy of what a scrape reads, taken at once."""

    counts: dict[str, float]  # the service's plain counters (stats and tenant store)
    verdicts: dict[str, int]  # "<stage>.<code>" -> verdicts
    breakers: dict[str, Any]  # model -> Breaker (state, live_workers)
    capacity: dict[str, int]  # model -> live workers' in-flight capacity
    transitions: list[Any]  # the health view's last breaker transitions, newest last
    retry_budget: Any  # RetryBudget: fallback moves spent and refused
    load: dict[str, Any]  # model -> ModelLoad (backlog, drain rate) of its interactive topic
    accounts: dict[str, Any]  # tenant -> Account, the tenants whose counters this router owns
    last_beat_s: float | None  # monotonic time the consume loop last turned (None: not yet)
    models: list[str] = field(default_factory=list)
    forwards: dict[str, dict[str, int]] = field(default_factory=dict)  # model -> tier ("": named) -> forwards
    classify: tuple[list[tuple[str, int]], float] | None = None  # cumulative buckets, sum (None: no stage)


def read_router(service: Any) -> RouterState:
    """The adapter: where RouterService keeps what the collector reads. Called on the metrics thread; each
    container is copied in one C-level call (atomic under the GIL) before anything iterates it."""
    views, stats = service.views, service.stats
    health = views.health
    for attempt in range(3):
        try:
            counts = {k: v for k, v in dict(service.counts).items() if isinstance(v, int | float)}
            break
        except RuntimeError:  # a dict grew while `counts` copied it (another thread's scrape: try again)
            if attempt == 2:
                raise
    last = getattr(service, "_last_beat", 0.0)
    timings = next((st.classify_seconds for st in service.pipeline.stages if st.name == "resolve_model"), None)
    classify = (timings.cumulative(), timings.total) if timings is not None else None
    return RouterState(
        counts=counts,
        verdicts=dict(stats.verdicts),
        breakers=dict(health.breakers),
        capacity=dict(health.capacity),
        transitions=list(health.transitions),
        retry_budget=health.budget,
        load=dict(views.load.models),
        accounts=dict(views.accounts.accounts),
        last_beat_s=last or None,
        models=list(service.settings.model_names),
        forwards={m: dict(tiers) for m, tiers in dict(stats.forwards).items()},
        classify=classify,
    )


def router_beat(state: RouterState) -> Beat:
    """Liveness from the consume loop (it beats every turn: `health_interval_ms`); readiness once the views are
    fed: every model topic's load has been read (the broker answers, the topics exist)."""
    if state.last_beat_s is None:
        return Beat(None, False, "starting: the consume loop has not turned yet")
    unfed = [m for m in state.models if m not in state.load]
    if unfed:
        return Beat(state.last_beat_s, False, f"views not fed yet: no load read for {unfed}")
    detail = {"breakers": {m: b.state.value for m, b in state.breakers.items()}}
    return Beat(state.last_beat_s, True, "ok", detail)


class RouterCollector(Collector):
    def __init__(self, settings: Settings, read: Callable[[], RouterState]) -> None:
        self._prefix = settings.metrics.prefix
        self._read = read
        self._transitions: dict[tuple[str, str], int] = {}  # (model, to) -> transitions counted so far
        self._last_transition: Any = None  # the newest transition counted (by identity)
        self._lock = threading.Lock()  # two scrapes at once (two Prometheus servers) count each transition once
        self._failed = 0

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        p = self._prefix
        try:
            s = self._read()
        except Exception as exc:  # the service moved something the adapter reads: say so, never fail the scrape
            self._failed += 1
            if self._failed == 1:
                log.error("router.metrics_unreadable", error=repr(exc))
            c = CounterMetricFamily(p + "router_metrics_read_failures", "Scrapes that could not read the router.")
            c.add_metric([], self._failed)
            yield c
            return
        for name, value in sorted(s.counts.items()):
            help_ = COUNT_HELP.get(name, f"The router's `{name}` count.")
            c = CounterMetricFamily(p + f"router_{name}", help_)
            c.add_metric([], value)
            yield c
        verdicts = CounterMetricFamily(
            p + "router_verdicts", "Pipeline verdicts by the stage that decided and its code.", labels=["stage", "code"]
        )
        for key, n in sorted(s.verdicts.items()):
            stage, _, code = key.partition(".")
            verdicts.add_metric([stage, code], n)
        yield verdicts
        forwards = CounterMetricFamily(
            p + "router_forwards",
            'Requests forwarded, by model and tier (tier "": the request named its model).',
            labels=["model_name", "tier"],
        )
        for model, tiers in sorted(s.forwards.items()):
            for tier, n in sorted(tiers.items()):
                forwards.add_metric([model, tier], n)
        yield forwards
        if s.classify is not None:
            buckets, total = s.classify
            h = HistogramMetricFamily(
                p + "router_classification_seconds", 'Time to classify an "auto" request (complexity score, tier).'
            )
            h.add_metric([], buckets, total)
            yield h
        degraded = CounterMetricFamily(p + "router_degraded_answers", "Degraded answers (every model down).")
        degraded.add_metric([], s.verdicts.get("fallback.answer", 0))
        yield degraded
        yield from self._breakers(s)
        budget = s.retry_budget
        moves = CounterMetricFamily(p + "router_fallback_moves", "Requests sent on to a fallback model.")
        moves.add_metric([], getattr(budget, "spent", 0))
        yield moves
        refused = CounterMetricFamily(p + "router_fallback_budget_exhausted", "Fallback moves refused (budget).")
        refused.add_metric([], getattr(budget, "refused", 0))
        yield refused
        backlog = GaugeMetricFamily(
            p + "router_model_backlog",
            "Requests on a model's topic not yet committed by its workers, as the router's load view reads them.",
            labels=["model_name", "lane"],
        )
        drain = GaugeMetricFamily(
            p + "router_model_drain_per_second", "Requests a model's workers finish per second.", labels=["model_name"]
        )
        for model, load in sorted(s.load.items()):
            backlog.add_metric([model, "interactive"], load.backlog)
            drain.add_metric([model], load.drain_per_s)
        yield backlog
        yield drain
        yield from self._tenants(s)

    def _breakers(self, s: RouterState) -> Iterator[Metric]:
        p = self._prefix
        state = GaugeMetricFamily(
            p + "router_breaker_state", "1 for each model's breaker state now.", labels=["model_name", "state"]
        )
        live = GaugeMetricFamily(
            p + "router_live_workers", "Live workers per model (status heartbeats).", labels=["model_name"]
        )
        capacity = GaugeMetricFamily(
            p + "router_model_capacity", "In-flight capacity of live workers.", labels=["model_name"]
        )
        for model, b in sorted(s.breakers.items()):
            for st in BREAKER_STATES:
                state.add_metric([model, st], 1.0 if b.state.value == st else 0.0)
            live.add_metric([model], b.live_workers)
            capacity.add_metric([model], s.capacity.get(model, 0))
        yield state
        yield live
        yield capacity
        # transitions since the last scrape: the view keeps the newest few; count those after the last one seen
        with self._lock:
            new = s.transitions
            if self._last_transition is not None:
                for i in range(len(new) - 1, -1, -1):
                    if new[i] is self._last_transition:
                        new = new[i + 1 :]
                        break
            for t in new:
                key = (t.model, t.new.value)
                self._transitions[key] = self._transitions.get(key, 0) + 1
            if s.transitions:
                self._last_transition = s.transitions[-1]
            counted = sorted(self._transitions.items())
        trans = CounterMetricFamily(
            p + "router_breaker_transitions", "Breaker transitions by the state entered.", labels=["model_name", "to"]
        )
        for (model, to), n in counted:
            trans.add_metric([model, to], n)
        yield trans

    def _tenants(self, s: RouterState) -> Iterator[Metric]:
        """Counters of the tenants this router owns (their rate limits and budgets): spend this UTC day and
        month, against the budget; the other routers export their own tenants (take `max by (tenant)`)."""
        p = self._prefix

        def gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(p + name, doc, labels=list(labels))

        spent_tokens = gauge("tenant_spent_tokens", "Tokens a tenant spent in the period (UTC).", "tenant", "period")
        spent_cost = gauge("tenant_spent_cost", "Cost a tenant spent in the period (UTC).", "tenant", "period")
        budget_tokens = gauge("tenant_budget_tokens", "A tenant's token budget for the period.", "tenant", "period")
        budget_cost = gauge("tenant_budget_cost", "A tenant's cost budget for the period.", "tenant", "period")
        pending = gauge("tenant_reservations", "Admitted requests not yet settled by usage.", "tenant")
        held = gauge("tenant_held_requests", "Batch requests held for the tenant's rate.", "tenant")
        now_ms = int(time.time() * 1000)
        keys = {"day": day_key(now_ms), "month": month_key(now_ms)}
        for name, account in sorted(s.accounts.items()):
            ledger, limits = account.state.ledger, account.limits
            for period, spent in (("day", ledger.day), ("month", ledger.month)):
                current = spent.key == keys[period]  # a period rolled with no request since: nothing spent yet
                spent_tokens.add_metric([name, period], spent.tokens if current else 0)
                spent_cost.add_metric([name, period], spent.cost if current else 0.0)
                tokens_limit = getattr(limits, f"{'daily' if period == 'day' else 'monthly'}_tokens")
                cost_limit = getattr(limits, f"{'daily' if period == 'day' else 'monthly'}_cost")
                if tokens_limit is not None:
                    budget_tokens.add_metric([name, period], tokens_limit)
                if cost_limit is not None:
                    budget_cost.add_metric([name, period], cost_limit)
            pending.add_metric([name], len(ledger.pending))
            held.add_metric([name], len(account.held))
        yield from (spent_tokens, spent_cost, budget_tokens, budget_cost, pending, held)


def serve_router(settings: Settings, service: Any) -> MetricsServer | None:
    """/metrics, /livez and /readyz for a RouterService (fleet/cli.py wires it where it builds the service);
    None when metrics are off."""
    registry = new_registry()
    registry.register(RouterCollector(settings, lambda: read_router(service)))
    probes = Probes(settings.metrics, read=lambda: router_beat(read_router(service)))
    return serve(settings.metrics, registry, probes)
