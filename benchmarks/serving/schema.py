"""What a serving or scale run records: the report structures written as JSON (run metadata: common/results.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.common.metrics import RequestTrace, ServingMetrics, request_metrics
from benchmarks.common.results import RunMeta

GOAL_X_FLOOR_P50 = 1.5
GOAL_X_FLOOR_P99 = 2.0


@dataclass(frozen=True, slots=True)
class Samples:
    """Per-request values in ms of the successful requests, for CDF plots."""

    ttft_ms: list[float]
    e2el_ms: list[float]
    tpot_ms: list[float]


def samples(traces: list[RequestTrace]) -> Samples:
    per = [m for m in (request_metrics(t) for t in traces) if m is not None]
    return Samples(
        ttft_ms=[round(m.ttft * 1e3, 3) for m in per],
        e2el_ms=[round(m.e2el * 1e3, 3) for m in per],
        tpot_ms=[round(m.tpot * 1e3, 3) for m in per if m.tpot is not None],
    )


@dataclass(frozen=True, slots=True)
class Overhead:
    """The fleet's TTFT minus the in-process engine's, and that as a multiple of the raw Kafka floor.

    Differences of percentiles (the two runs' requests do not pair up one to one)."""

    overhead_p50_ms: float
    overhead_p99_ms: float
    floor_p50_ms: float
    floor_p99_ms: float
    x_floor_p50: float
    x_floor_p99: float
    goal_x_floor_p50: float = GOAL_X_FLOOR_P50
    goal_x_floor_p99: float = GOAL_X_FLOOR_P99
    meets_goal: bool = False


def overhead(fleet: ServingMetrics, inprocess: ServingMetrics, floor: ServingMetrics) -> Overhead:
    o50 = fleet.ttft.median - inprocess.ttft.median
    o99 = fleet.ttft.p99 - inprocess.ttft.p99
    x50 = o50 / floor.ttft.median if floor.ttft.median > 0 else float("nan")
    x99 = o99 / floor.ttft.p99 if floor.ttft.p99 > 0 else float("nan")
    return Overhead(
        overhead_p50_ms=o50,
        overhead_p99_ms=o99,
        floor_p50_ms=floor.ttft.median,
        floor_p99_ms=floor.ttft.p99,
        x_floor_p50=x50,
        x_floor_p99=x99,
        meets_goal=bool(x50 <= GOAL_X_FLOOR_P50 and x99 <= GOAL_X_FLOOR_P99),
    )


@dataclass(frozen=True, slots=True)
class ServingPoint:
    """One arrival setting, measured three ways in the same run."""

    label: str
    request_rate: float | None  # None: no pacing (all at once, bounded by concurrency)
    fleet: ServingMetrics
    inprocess: ServingMetrics | None
    floor: ServingMetrics | None
    overhead: Overhead | None
    samples: dict[str, Samples]  # "fleet" / "inprocess" / "floor"


@dataclass(frozen=True, slots=True)
class ServingReport:
    meta: RunMeta
    config: dict[str, Any]
    points: list[ServingPoint]
    headline: int = 0  # the point the summary leads with
    kind: str = "serving"


@dataclass(frozen=True, slots=True)
class ScalePoint:
    workers: int
    partitions: int
    request_rate: float
    metrics: ServingMetrics


@dataclass(frozen=True, slots=True)
class RebalancePause:
    """What a consumer-group rebalance did to requests in flight and arriving."""

    event: str  # "join" or "leave"
    workers_before: int
    workers_after: int
    stall_ms: float  # longest time after the event during which no request got its first token
    normal_gap_ms: float  # the longest such gap in the steady window before the event
    ttft_p50_before_ms: float
    ttft_max_after_ms: float  # worst TTFT among requests sent in the window after the event
    delayed_requests: int  # requests after the event with TTFT over 2x the p99 before it
    window_s: float


@dataclass(frozen=True, slots=True)
class ScaleReport:
    meta: RunMeta
    config: dict[str, Any]
    points: list[ScalePoint]
    rebalance: list[RebalancePause] = field(default_factory=list)
    kind: str = "scale"
    engine: str = "SIMULATED (timed token emission, no model)"
