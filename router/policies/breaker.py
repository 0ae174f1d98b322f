"""A circuit breaker per model, on plain data: outcomes and worker counts come in with the time (`now_ms`),
transitions come out (with their reason, for the log). No clock reads, no Kafka.

    closed --(error rate over the window > threshold, with enough outcomes; or no live worker for a while)--> open
    open (never live since the start) --(a first live worker)--> closed
    open --(cool-down passed and a live worker)--> half-open
    half-open --(a success)--> closed;  --(a failure, or no live worker for a while)--> open

Half-open lets `probes` requests through (one more each cool-down while none has an outcome): the rest go to a
fallback. Outcomes that arrive while open are stale (requests sent before it opened) and are not counted; the
window starts empty when it closes.

Outcomes carry the tenant that sent the request. One tenant's failures cannot open the breaker for everyone:
while the window holds outcomes of several tenants, the error rate is taken without the tenant with the most
failures (it must be over the threshold among everybody else too); with one tenant only (a fleet without
tenants, or a model only one tenant uses), the plain rate counts.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    window_ms: int = 30_000
    error_rate: float = 0.05  # opens above this share of failures...
    min_requests: int = 20  # ...among at least this many outcomes in the window
    no_worker_ms: int = 2_000  # opens after this long with no live worker
    cooldown_ms: int = 5_000  # open this long before probing
    probes: int = 3  # requests let through while half-open
    start_grace_ms: int = 10_000  # a model not yet seen live is given this long from the start (workers loading)


@dataclass(frozen=True, slots=True)
class Transition:
    model: str
    old: BreakerState
    new: BreakerState
    reason: str
    at_ms: int


class Breaker:
    def __init__(self, model: str, config: BreakerConfig, now_ms: int) -> None:
        self.model = model
        self.config = config
        self.state = BreakerState.CLOSED
        self.reason = "start"
        self.since_ms = now_ms
        self.live_workers = 0
        self.last_live_ms = now_ms
        self.seen_live = False  # a worker of it reported live since the start
        self.blind_ms: int | None = None  # when the health feed last could not see the fleet (broker unreachable)
        self._outcomes: deque[tuple[int, bool, str]] = deque()  # (at_ms, failed, tenant)
        self._failures = 0
        self._by_tenant: dict[str, list[int]] = {}  # tenant -> [outcomes, failures] in the window
        self._probes_sent = 0
        self._last_probe_ms = 0

    # -- inputs ------------------------------------------------------------------------------------
    def workers(self, live: int, now_ms: int) -> Transition | None:
        """The live worker count now (fresh heartbeats of serving or paused workers). No live worker for `no_worker_ms`
        (`start_grace_ms` for a model never seen live) opens; the first live worker of a model that was never
        live closes at once (it opened for want of a worker, never for its answers)."""
        self.live_workers = live
        if live > 0:
            self.last_live_ms = now_ms
            first, self.seen_live = not self.seen_live, True
            if first and self.state is BreakerState.OPEN:
                return self._go(BreakerState.CLOSED, f"first live worker ({live})", now_ms)
            return self.tick(now_ms)
        silent_ms = now_ms - self.last_live_ms
        c = self.config
        bound = c.no_worker_ms if self.seen_live else max(c.no_worker_ms, c.start_grace_ms)
        if self.blind_ms is not None and now_ms - self.blind_ms < max(c.no_worker_ms, c.start_grace_ms):
            return None  # the feed saw nothing a moment ago: workers get the start grace to report again
        if silent_ms >= bound and self.state is not BreakerState.OPEN:
            return self._go(BreakerState.OPEN, f"no live worker for {silent_ms} ms", now_ms)
        return None

    def blind(self, now_ms: int) -> None:
        """The health feed cannot see the fleet now (the broker does not answer): silence proves nothing."""
        self.blind_ms = now_ms

    def outcome(self, failed: bool, now_ms: int, what: str, tenant: str = "") -> Transition | None:
        """A request's outcome on this model: `what` names it for the log (a usage finish, a DLQ code); `tenant`
        the tenant whose request it was ("" where unknown: counted as one more tenant)."""
        if self.state is BreakerState.OPEN:
            return None  # sent before it opened: says nothing about the model now
        if self.state is BreakerState.HALF_OPEN:
            if failed:
                return self._go(BreakerState.OPEN, f"probe failed ({what})", now_ms)
            return self._go(BreakerState.CLOSED, f"probe succeeded ({what})", now_ms)
        self._outcomes.append((now_ms, failed, tenant))
        self._failures += failed
        counts = self._by_tenant.setdefault(tenant, [0, 0])
        counts[0] += 1
        counts[1] += failed
        self._prune(now_ms)
        if not failed:
            return None
        n, f = len(self._outcomes), self._failures
        excluded = ""
        if len(self._by_tenant) > 1:  # without the tenant with the most failures: it alone cannot open it
            worst = max(self._by_tenant, key=lambda t: self._by_tenant[t][1])
            n, f = n - self._by_tenant[worst][0], f - self._by_tenant[worst][1]
            excluded = f", without tenant {worst!r}'s"
        if n >= self.config.min_requests and f / n > self.config.error_rate:
            return self._go(
                BreakerState.OPEN,
                f"error rate {f / n:.1%} > {self.config.error_rate:.1%} over {n} outcomes{excluded} (last: {what})",
                now_ms,
            )
        return None

    def tick(self, now_ms: int) -> Transition | None:
        """Time-driven transitions: a cool-down over with a live worker probes."""
        if (
            self.state is BreakerState.OPEN
            and self.live_workers > 0
            and now_ms - self.since_ms >= self.config.cooldown_ms
        ):
            return self._go(BreakerState.HALF_OPEN, f"cool-down over, {self.live_workers} live worker(s)", now_ms)
        return None

    # -- the decision ------------------------------------------------------------------------------
    def admit(self, now_ms: int) -> bool:
        """Whether a request may go to this model now (a half-open admission takes a probe)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return False
        if self._probes_sent < self.config.probes or now_ms - self._last_probe_ms >= self.config.cooldown_ms:
            self._probes_sent += 1
            self._last_probe_ms = now_ms
            return True
        return False

    def error_rate(self, now_ms: int) -> tuple[int, int]:
        """(failures, outcomes) in the window now."""
        self._prune(now_ms)
        return self._failures, len(self._outcomes)

    # -- internals ---------------------------------------------------------------------------------
    def _prune(self, now_ms: int) -> None:
        edge = now_ms - self.config.window_ms
        while self._outcomes and self._outcomes[0][0] < edge:
            _, failed, tenant = self._outcomes.popleft()
            self._failures -= failed
            counts = self._by_tenant[tenant]
            counts[0] -= 1
            counts[1] -= failed
            if not counts[0]:
                del self._by_tenant[tenant]

    def _go(self, new: BreakerState, reason: str, now_ms: int) -> Transition:
        t = Transition(self.model, self.state, new, reason, now_ms)
        self.state, self.reason, self.since_ms = new, reason, now_ms
        self._probes_sent = 0
        if new is not BreakerState.HALF_OPEN:
            self._outcomes.clear()
            self._failures = 0
            self._by_tenant.clear()
        return t
