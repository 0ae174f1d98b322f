"""A latency histogram the hot path can afford: fixed buckets, a bisect and two additions per observation, no
lock and no library call (prometheus_client's Histogram takes a lock per observation). A scrape copies it
(router/metrics.py) and exports it as a Prometheus histogram. Pure."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# seconds: the classifier's typical request takes tens of microseconds, a pathological one up to its character cap
BOUNDS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2)


@dataclass
class Timings:
    bounds: tuple[float, ...] = BOUNDS
    counts: list[int] = field(init=False)  # per bucket (not cumulative), the last one above every bound
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    @property
    def n(self) -> int:
        return sum(self.counts)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound as Prometheus writes it, observations at or below it), ending with "+Inf"; from one copy of
        the counts (the hot path may observe meanwhile, on another thread)."""
        out, running = [], 0
        for bound, c in zip((*self.bounds, float("inf")), list(self.counts), strict=True):
            running += c
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out
