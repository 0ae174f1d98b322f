"""The worker's Prometheus metrics: vLLM's names and meanings (`vllm/v1/metrics/loggers.py`) with the configured
prefix in place of `vllm:`, plus the fleet's own (refusals, outbox, watchdog, Kafka intake).

Two kinds, as vLLM splits stats from loggers:

- per request, observed where it happens (the engine driver calls `tokens` for each step's new tokens and
  `finished` once a request ends): the latency and length histograms and finished requests by reason. Their
  children are bound to their labels once, here: an observation is one `Histogram.observe` (about 1 us);
- everything that already exists as a plain count or the engine's own stats (tokens, running and waiting,
  KV-cache use, speculation, refusals, outbox retries, commits) is read when Prometheus scrapes (`_Scraped`),
  so the hot path pays nothing for it.

Labels: `model_name` (vLLM's), `quantization` and `worker_id` (in place of vLLM's `engine` index): a few series
per worker, none per request or tenant.

Times: TTFT, queue and end-to-end count from the request's intake at the router (the `done` event's `timings`
and the usage record say the same), so they include the Kafka hops and the wait on the model topic, which is
what a client sees; vLLM's count from its own frontend's arrival.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fleet.metrics import ITL_BUCKETS, REQUEST_LATENCY_BUCKETS, TTFT_BUCKETS, buckets_1_2_5
from fleet.settings import ModelSettings
from worker.engine.api import EngineStats, FinishKind
from worker.state import RequestState

LABELS = ("model_name", "quantization", "worker_id")
FINISHED = (FinishKind.STOP, FinishKind.LENGTH, FinishKind.CANCELLED, FinishKind.EXPIRED)


class WorkerMetrics:
    """Instruments one worker. `attach` hands it the service's parts whose counts a scrape reads."""

    def __init__(
        self,
        registry: CollectorRegistry,
        prefix: str,
        model: ModelSettings,
        worker_id: str,
        max_model_len: int,
        *,
        tenants: Sequence[str] = (),
        tiers: Sequence[str] = (),
    ) -> None:
        self.prefix = prefix
        self.labels = {"model_name": model.name, "quantization": model.quantization.value, "worker_id": worker_id}
        self._model = model
        self._max_batch_tokens = model.max_batch_tokens
        # bounded labels: a configured tenant's name ("other" for any else; "default" with no tenants configured:
        # the body's `tenant` is unchecked then), a configured tier's ("" for a named model)
        self._tenants = frozenset(tenants)
        self._tiers = frozenset(tiers)
        self.by_tenant: dict[tuple[str, str], list[float]] = {}  # (tenant, tier) -> [runs, prompt, completion, cost]

        def hist(name: str, doc: str, buckets: tuple[float, ...] | list[float]) -> Any:
            h = Histogram(prefix + name, doc, LABELS, registry=registry, buckets=buckets)
            return h.labels(**self.labels)

        tokens = buckets_1_2_5(max_model_len)
        self.ttft = hist("time_to_first_token_seconds", "Time to first token, from intake at the router.", TTFT_BUCKETS)
        self.itl = hist("inter_token_latency_seconds", "Time between successive steps' new tokens.", ITL_BUCKETS)
        self.tpot = hist(
            "request_time_per_output_token_seconds", "Per request: mean time per output token after the first.",
            ITL_BUCKETS,
        )
        self.e2e = hist("e2e_request_latency_seconds", "From intake at the router to the end.", REQUEST_LATENCY_BUCKETS)
        self.queue = hist(
            "request_queue_time_seconds", "From intake to the start of prefill (Kafka and the engine's queue).",
            REQUEST_LATENCY_BUCKETS,
        )
        self.prefill = hist("request_prefill_time_seconds", "Time in prefill.", REQUEST_LATENCY_BUCKETS)
        self.decode = hist("request_decode_time_seconds", "From the first to the last token.", REQUEST_LATENCY_BUCKETS)
        self.inference = hist("request_inference_time_seconds", "Prefill plus decode.", REQUEST_LATENCY_BUCKETS)
        self.prompt_len = hist("request_prompt_tokens", "Prompt tokens per request.", tokens)
        self.gen_len = hist("request_generation_tokens", "Generated tokens per request.", tokens)
        self.max_tokens = hist("request_params_max_tokens", "The max_tokens request parameter.", tokens)
        success = Counter(
            prefix + "request_success", "Finished requests by finish reason.", [*LABELS, "finished_reason"],
            registry=registry,
        )
        self.finished_by = {k: success.labels(**self.labels, finished_reason=k.value) for k in FINISHED}
        # counted here, exported at scrape time
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.engine: EngineStats | None = None  # the status loop's latest read of the engine's stats
        self._parts: dict[str, Any] = {}
        registry.register(_Scraped(self))

    def attach(self, **parts: Any) -> None:
        """The service's parts a scrape reads counts from: driver, intake, commits, replies, outboxes."""
        self._parts = parts

    def part(self, name: str) -> Any:
        return self._parts.get(name)

    # -- the engine driver's hooks (event-loop thread) ---------------------------------------------------
    def tokens(self, state: RequestState, n: int, prev_s: float | None, now_s: float) -> None:
        """A step gave `state` `n` new tokens at `now_s`; `prev_s`: when its previous ones came (None: the first)."""
        self.generation_tokens += n
        if prev_s is None:
            self.ttft.observe(max(0.0, now_s - state.intake_s))
        else:
            self.itl.observe(now_s - prev_s)

    def finished(self, state: RequestState, kind: FinishKind, now_s: float) -> None:
        """`state` ended as `kind` at `now_s` (stop, length, cancelled, expired; never abandoned)."""
        self.finished_by[kind].inc()
        prompt, n = state.num_prompt_tokens, state.detok.num_tokens
        self.prompt_tokens += prompt  # as the usage record counts them
        key = (self._tenant(state.request.tenant), state.tier if state.tier in self._tiers else "")
        row = self.by_tenant.get(key)
        if row is None:
            row = self.by_tenant[key] = [0, 0, 0, 0.0]
        m = self._model
        row[0] += 1
        row[1] += prompt
        row[2] += n
        row[3] += (prompt * m.price_per_1k_prompt + n * m.price_per_1k_completion) / 1000
        self.e2e.observe(max(0.0, now_s - state.intake_s))
        self.gen_len.observe(n)
        self.prompt_len.observe(prompt)
        self.max_tokens.observe(state.request.max_tokens)
        first, last = state.first_token_s, state.last_token_s
        if first is None or last is None:
            return  # ended before its first token: no queue, prefill or decode time to speak of
        prefill_s = state.prefill_ms / 1000
        decode_s = max(0.0, last - first)
        self.queue.observe(max(0.0, first - prefill_s - state.intake_s))
        self.prefill.observe(prefill_s)
        self.decode.observe(decode_s)
        self.inference.observe(prefill_s + decode_s)
        if n > 1:
            self.tpot.observe(decode_s / (n - 1))

    def _tenant(self, name: str | None) -> str:
        if not self._tenants:
            return "default"
        return name if name in self._tenants else "other"

    def kv_usage(self, s: EngineStats) -> float:
        """The KV cache in use, 0..1: the tokens the scheduler reserved of its budget (vLLM: blocks in use)."""
        reserved = s.extra.get("kv_reserved_tokens")
        if reserved is not None and self._max_batch_tokens:
            return min(1.0, reserved / self._max_batch_tokens)
        return min(1.0, s.kv_cache_bytes / s.kv_budget_bytes) if s.kv_budget_bytes else 0.0


class _Scraped(Collector):
    """What a scrape reads from the worker's own counts (plain ints the event loop keeps; reads are atomic)."""

    def __init__(self, m: WorkerMetrics) -> None:
        self._m = m

    def describe(self) -> list[Metric]:
        return []  # collected on every scrape; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        m, p, values = self._m, self._m.prefix, list(self._m.labels.values())

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(p + name, doc, labels=LABELS)
            c.add_metric(values, value)
            return c

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(p + name, doc, labels=LABELS)
            g.add_metric(values, value)
            return g

        yield counter("prompt_tokens", "Prompt tokens of finished requests (as their usage records).", m.prompt_tokens)
        yield counter("generation_tokens", "Tokens generated.", m.generation_tokens)
        s = m.engine
        if s is not None:
            yield gauge("num_requests_running", "Requests in the engine's running batch.", s.running)
            yield gauge("num_requests_waiting", "Requests waiting in the engine's queue.", s.waiting)
            yield gauge("kv_cache_usage_perc", "KV-cache usage; 1 means 100 percent.", m.kv_usage(s))
            yield counter("spec_decode_num_draft_tokens", "Speculative tokens proposed.", s.spec_draft_tokens)
            yield counter("spec_decode_num_accepted_tokens", "Speculative tokens accepted.", s.spec_accepted_tokens)
        tenant_labels = [*LABELS, "tenant", "tier"]
        for i, (name, doc) in enumerate(
            (
                ("tenant_requests", "Finished generation runs by tenant and tier (one usage record each)."),
                ("tenant_prompt_tokens", "Prompt tokens by tenant and tier (as the usage records)."),
                ("tenant_generation_tokens", "Generated tokens by tenant and tier (as the usage records)."),
                ("tenant_cost", "Cost at the model's configured prices, by tenant and tier (as the usage records)."),
            )
        ):
            fam = CounterMetricFamily(p + name, doc, labels=tenant_labels)
            for (tenant, tier), row in dict(m.by_tenant).items():
                fam.add_metric([*values, tenant, tier], row[i])
            yield fam
        driver = m.part("driver")
        if driver is not None:
            c = driver.counts
            yield counter("engine_step_failures", "Engine steps that raised (their requests restarted).",
                          c.engine_failures)
            yield counter("engine_watchdog_trips", "Hung engines killed by the watchdog (the worker then exits).",
                          c.watchdog_trips)
            yield counter("requests_abandoned", "Requests given up unanswered (revoked partitions, stops).",
                          c.abandoned)
            yield counter("requests_expired_by_worker", "Requests the worker answered `expired` itself.",
                          c.expired_by_worker)
        replies = m.part("replies")
        if replies is not None:
            refused = CounterMetricFamily(
                p + "requests_refused", "Requests refused with an error event and a DLQ copy, by code (poison: the "
                "poison verdict).", labels=[*LABELS, "code"],
            )
            for code, n in dict(replies.refused).items():
                refused.add_metric([*values, code], n)
            yield refused
        outboxes: dict[str, Any] = m.part("outboxes") or {}
        if outboxes:
            for attr, name, doc in (
                ("retries", "outbox_send_retries", "Sends retried after a retriable failure."),
                ("undeliverable", "outbox_undeliverable", "Records that could never be written (undeliverable)."),
                ("delivered", "outbox_delivered", "Records the broker acknowledged."),
            ):
                fam = CounterMetricFamily(p + name, doc, labels=[*LABELS, "outbox"])
                for box_name, box in outboxes.items():
                    fam.add_metric([*values, box_name], getattr(box, attr))
                yield fam
        intake = m.part("intake")
        if intake is not None:
            yield counter("requests_consumed", "Records taken from the model's topics.", intake.consumed)
            yield counter("requests_undecodable", "Batches of the model's topics nothing could decode.",
                          intake.undecodable)
        commits = m.part("commits")
        if commits is not None:
            yield counter("requests_committed", "Requests whose offsets the broker committed.", commits.committed)
            yield gauge("num_requests_uncommitted", "Requests taken and not yet committed.", commits.uncommitted)
