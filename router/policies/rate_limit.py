"""Token buckets for a tenant's rate limits (requests per second, tokens per minute), as plain data with
pure functions: the time comes in, nothing is read from a clock, and the state is a msgspec struct the owning
router snapshots to Kafka (router/accounts/store.py).

A bucket holds up to `burst` and refills at `rate_per_s`. A request passes when the bucket holds its cost,
or, for a cost above the burst (one request asking for more tokens than the burst), when the bucket is
full; it then takes its whole cost and the level may go negative (debt the refill pays back). So whatever
the arrivals, what passes in any window is at most burst + rate x window, plus one request.
"""

from __future__ import annotations

import math

import msgspec


class Bucket(msgspec.Struct, array_like=True):
    level: float  # what the bucket held at `t_ms` (negative: debt)
    t_ms: int


class Rate(msgspec.Struct, frozen=True):
    rate_per_s: float
    burst: float

    def new(self, now_ms: int) -> Bucket:
        return Bucket(self.burst, now_ms)


def level(b: Bucket, r: Rate, now_ms: int) -> float:
    """The bucket's level at `now_ms` (refilled since `t_ms`, capped at the burst)."""
    elapsed_s = max(0, now_ms - b.t_ms) / 1000
    return min(r.burst, b.level + elapsed_s * r.rate_per_s)


def wait_ms(b: Bucket, r: Rate, cost: float, now_ms: int) -> int:
    """How long until a request of `cost` can pass (0: now)."""
    need = min(cost, r.burst) - level(b, r, now_ms)
    if need <= 0:
        return 0
    return max(1, math.ceil(need / r.rate_per_s * 1000))


def take(b: Bucket, r: Rate, cost: float, now_ms: int) -> None:
    """Take `cost` (the caller checked `wait_ms` is 0, or pays ahead for paced work)."""
    b.level = level(b, r, now_ms) - cost
    b.t_ms = max(b.t_ms, now_ms)


def give_back(b: Bucket, r: Rate, amount: float, now_ms: int) -> None:
    """Return what a request reserved and did not use (capped at the burst)."""
    b.level = min(r.burst, level(b, r, now_ms) + max(0.0, amount))
    b.t_ms = max(b.t_ms, now_ms)
