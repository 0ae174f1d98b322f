"""Request arrival schedules, as `vllm bench serve` draws them. Pure: numpy only.

Gaps between requests are gamma distributed with shape ``burstiness`` and
scale ``1 / (rate * burstiness)``: the mean gap is ``1 / rate`` whatever the
burstiness, and the coefficient of variation of the gaps is
``1 / sqrt(burstiness)``. ``burstiness = 1`` is a Poisson process
(exponential gaps); below 1 is burstier, above 1 more even, infinity is a
fixed gap. An infinite rate sends everything at once. Without a ramp-up, the
cumulative schedule is rescaled so the last request goes out at exactly
``n / rate`` (as vLLM does, to make throughput stable across seeds). A ramp-up
moves the rate linearly or exponentially from a start to an end rate over the
requests. A fixed concurrency (a semaphore in the driver) combines with any
schedule.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np


class RampStrategy(enum.StrEnum):
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


@dataclass(frozen=True, slots=True)
class RampUp:
    strategy: RampStrategy
    start_rps: float
    end_rps: float

    def __post_init__(self) -> None:
        if self.start_rps <= 0 or self.end_rps <= 0 or math.isinf(self.start_rps) or math.isinf(self.end_rps):
            raise ValueError("ramp-up rates must be positive and finite")


@dataclass(frozen=True, slots=True)
class ArrivalSpec:
    request_rate: float = math.inf  # requests per second; inf sends all at once (bounded by concurrency)
    burstiness: float = 1.0
    ramp_up: RampUp | None = None

    def __post_init__(self) -> None:
        if not self.request_rate > 0:
            raise ValueError("request_rate must be positive (inf for no pacing)")
        if not self.burstiness > 0:
            raise ValueError("burstiness must be positive")

    @property
    def label(self) -> str:
        if self.ramp_up is not None:
            r = self.ramp_up
            return f"ramp {r.strategy.value} {r.start_rps:g}->{r.end_rps:g} req/s, b={self.burstiness:g}"
        if math.isinf(self.request_rate):
            return "all at once"
        kind = "Poisson" if self.burstiness == 1.0 else f"gamma, burstiness {self.burstiness:g}"
        return f"{self.request_rate:g} req/s ({kind})"


def rate_at(spec: ArrivalSpec, index: int, total: int) -> float:
    """The request rate in force for request `index` of `total`."""
    ramp = spec.ramp_up
    if ramp is None:
        return spec.request_rate
    progress = index / max(total - 1, 1)
    if ramp.strategy is RampStrategy.LINEAR:
        return ramp.start_rps + (ramp.end_rps - ramp.start_rps) * progress
    return float(ramp.start_rps * (ramp.end_rps / ramp.start_rps) ** progress)


def arrival_offsets(n: int, spec: ArrivalSpec, seed: int | None = 0) -> np.ndarray:
    """Send times in seconds from the start of the run, one per request (float64, non-decreasing)."""
    if n <= 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    gaps = np.empty(n)
    for i in range(n):
        rate = rate_at(spec, i, n)
        if math.isinf(rate):
            gaps[i] = 0.0
        elif math.isinf(spec.burstiness):
            gaps[i] = 1.0 / rate
        else:
            gaps[i] = rng.gamma(shape=spec.burstiness, scale=1.0 / (rate * spec.burstiness))
    offsets = np.cumsum(gaps)
    if spec.ramp_up is None and not math.isinf(spec.request_rate) and offsets[-1] > 0:
        offsets *= (n / spec.request_rate) / offsets[-1]
    return offsets
