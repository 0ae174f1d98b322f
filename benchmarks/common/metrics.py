"""Serving metrics with the definitions `vllm bench serve` uses. Pure: no I/O, no Kafka.

Per request, timed at the client (``time.perf_counter()`` seconds):

- TTFT: from send to the first event that carries output (the first chunk).
- ITL: the gaps between consecutive output-carrying events of one request
  (chunks, so with chunk coalescing one gap can span several tokens, as in vLLM).
- E2EL: from send to the terminal ``done`` event.
- TPOT: ``(E2EL - TTFT) / (output_tokens - 1)``; only requests with more than
  one output token enter the TPOT statistics. For goodput a single-token
  request counts as TPOT 0.

Aggregates: only successful requests enter latency statistics; throughputs
divide by the wall-clock duration of the measured (non warm-up) run; the
percentiles are numpy's linear interpolation; an empty metric reports 0.
Goodput is the number of successful requests that meet every given SLO
(``metric <= slo``), divided by the duration.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

MS = 1000.0
SLO_METRICS = ("ttft", "tpot", "e2el")
PERCENTILES = (50.0, 90.0, 99.0)


@dataclass(slots=True)
class RequestTrace:
    """What the client saw of one request. Times are perf_counter seconds."""

    send_s: float
    token_event_s: list[float] = field(default_factory=list)  # events that carried output, in order
    done_s: float | None = None  # terminal `done`; None when the request failed
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None  # an error code (or exception name) when the request failed

    @property
    def success(self) -> bool:
        return self.error is None and self.done_s is not None


@dataclass(frozen=True, slots=True)
class RequestMetrics:
    """Per-request metrics in seconds; tpot is None for outputs of one token or none."""

    ttft: float
    itl: list[float]
    e2el: float
    tpot: float | None
    output_tokens: int
    prompt_tokens: int


def request_metrics(trace: RequestTrace) -> RequestMetrics | None:
    """Metrics of one request; None when it did not succeed."""
    if not trace.success or trace.done_s is None:
        return None
    events = trace.token_event_s
    first = events[0] if events else trace.done_s  # no chunk at all: the output (if any) came with `done`
    ttft = first - trace.send_s
    e2el = trace.done_s - trace.send_s
    itl = [b - a for a, b in itertools.pairwise(events)]
    tpot = (e2el - ttft) / (trace.output_tokens - 1) if trace.output_tokens > 1 else None
    return RequestMetrics(ttft, itl, e2el, tpot, trace.output_tokens, trace.prompt_tokens)


@dataclass(frozen=True, slots=True)
class Distribution:
    """Summary of one metric in milliseconds."""

    n: int
    mean: float
    median: float
    std: float
    p90: float
    p99: float
    min: float
    max: float

    def get(self, stat: str) -> float:
        value: float = getattr(self, stat)
        return value


def distribution(values_s: Sequence[float]) -> Distribution:
    """mean/median/std/p90/p99 in ms (numpy linear percentiles); all 0 when there are no values."""
    if not values_s:
        return Distribution(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    a = np.asarray(values_s, dtype=np.float64) * MS
    p50, p90, p99 = (float(x) for x in np.percentile(a, PERCENTILES))
    return Distribution(
        n=int(a.size),
        mean=float(a.mean()),
        median=p50,
        std=float(a.std()),
        p90=p90,
        p99=p99,
        min=float(a.min()),
        max=float(a.max()),
    )


def parse_slos(specs: Iterable[str]) -> dict[str, float]:
    """`["ttft:500", "tpot:50 e2el:2000"]` -> {"ttft": 500.0, ...} in milliseconds."""
    out: dict[str, float] = {}
    for spec in specs:
        for item in spec.replace(",", " ").split():
            name, sep, value = item.partition(":")
            name = name.strip().lower()
            if not sep or name not in SLO_METRICS:
                raise ValueError(f"bad SLO {item!r}: use NAME:MS with NAME one of {', '.join(SLO_METRICS)}")
            try:
                ms = float(value)
            except ValueError:
                raise ValueError(f"bad SLO {item!r}: {value!r} is not a number of milliseconds") from None
            if ms < 0:
                raise ValueError(f"bad SLO {item!r}: must not be negative")
            out[name] = ms
    return out


def meets_slos(m: RequestMetrics, slos_ms: dict[str, float]) -> bool:
    values = {"ttft": m.ttft, "tpot": m.tpot or 0.0, "e2el": m.e2el}
    return all(values[name] * MS <= limit for name, limit in slos_ms.items())


@dataclass(frozen=True, slots=True)
class ServingMetrics:
    completed: int
    failed: int
    errors: dict[str, int]
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float  # completed requests / s
    output_throughput: float  # output tokens of completed requests / s
    total_token_throughput: float  # (input + output) tokens / s
    request_goodput: float | None  # requests meeting every SLO / s; None without SLOs
    goodput_fraction: float | None  # good / (completed + failed)
    slos_ms: dict[str, float]
    ttft: Distribution
    tpot: Distribution
    itl: Distribution
    e2el: Distribution

    def dist(self, metric: str) -> Distribution:
        d: Distribution = getattr(self, metric)
        return d


def summarize(
    traces: Sequence[RequestTrace], duration_s: float, slos_ms: dict[str, float] | None = None
) -> ServingMetrics:
    """Aggregate metrics of one measured run (warm-up requests must not be in `traces`)."""
    if duration_s <= 0:
        raise ValueError("duration_s must be positive")
    slos = dict(slos_ms or {})
    per = [m for m in (request_metrics(t) for t in traces) if m is not None]
    errors = Counter(t.error or "no_done" for t in traces if not t.success)
    total_in = sum(m.prompt_tokens for m in per)
    total_out = sum(m.output_tokens for m in per)
    good = sum(1 for m in per if meets_slos(m, slos)) if slos else 0
    n = len(traces)
    return ServingMetrics(
        completed=len(per),
        failed=n - len(per),
        errors=dict(sorted(errors.items())),
        duration_s=duration_s,
        total_input_tokens=total_in,
        total_output_tokens=total_out,
        request_throughput=len(per) / duration_s,
        output_throughput=total_out / duration_s,
        total_token_throughput=(total_in + total_out) / duration_s,
        request_goodput=good / duration_s if slos else None,
        goodput_fraction=(good / n if n else 0.0) if slos else None,
        slos_ms=slos,
        ttft=distribution([m.ttft for m in per]),
        tpot=distribution([m.tpot for m in per if m.tpot is not None]),
        itl=distribution([x for m in per for x in m.itl]),
        e2el=distribution([m.e2el for m in per]),
    )


def ttfts_ms(traces: Iterable[RequestTrace]) -> list[float]:
    """TTFT of every successful request in ms, in trace order (for CDF plots)."""
    return [m.ttft * MS for m in (request_metrics(t) for t in traces) if m is not None]
