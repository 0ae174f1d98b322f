"""Per-model load as the router sees it, and the overload decision.

Backlog is the per-model topic's lag behind its worker group's committed
offsets (requests published but not finished); the drain rate is how fast
the committed offsets move. Pure: the router's load feed (router/feeds.py) puts the numbers in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ModelLoad:
    backlog: int = 0  # published but not finished (includes what workers hold in flight)
    fast_per_s: float = 0.0  # requests finished per second, EWMA over a few polls
    slow_per_s: float = 0.0  # the same over about a minute: a failover's commit stall does not zero it
    committed: int | None = None
    at_s: float | None = None

    @property
    def drain_per_s(self) -> float:
        """The better of the recent and the long-run rate: a stall while a dead worker's partitions
        wait for its session to time out must not turn every request into `overloaded`."""
        return max(self.fast_per_s, self.slow_per_s)


class LoadTracker:
    def __init__(self, max_backlog: int, fast: float = 0.3, slow: float = 0.01) -> None:
        self.max_backlog = max_backlog
        self._fast, self._slow = fast, slow
        self.models: dict[str, ModelLoad] = {}

    def update(self, model: str, end_total: int, committed_total: int, now_s: float) -> None:
        m = self.models.setdefault(model, ModelLoad())
        if m.committed is not None and m.at_s is not None and now_s > m.at_s:
            rate = max(0, committed_total - m.committed) / (now_s - m.at_s)
            m.fast_per_s = rate if m.fast_per_s == 0 else (1 - self._fast) * m.fast_per_s + self._fast * rate
            m.slow_per_s = rate if m.slow_per_s == 0 else (1 - self._slow) * m.slow_per_s + self._slow * rate
        m.committed, m.at_s = committed_total, now_s
        m.backlog = max(0, end_total - committed_total)

    def routed(self, model: str) -> None:
        """Count a request routed since the last poll (the next poll replaces the estimate with the truth)."""
        m = self.models.get(model)
        if m is not None:
            m.backlog += 1

    def refusal(self, model: str, deadline_ms: int | None, now_ms: int, capacity: int = 0) -> str | None:
        """A reason to answer `overloaded` now, or None to route the request. `capacity`: what the model's live
        workers hold in flight at most, as the health view counts them now (the router reads the status topic
        once, there: a second reader here heard a restarted worker a poll later, and the backlog queued while
        the model was dead then counted as waiting behind no capacity and was refused)."""
        m = self.models.get(model)
        if m is None:
            return None
        if m.backlog >= self.max_backlog:
            return f"model {model} has {m.backlog} requests waiting (bound {self.max_backlog}); retry later"
        # waiting in the topic, beyond what the workers already hold
        queued = m.backlog - capacity
        if deadline_ms is not None and queued > 0 and m.drain_per_s > 0:
            wait_ms = queued / m.drain_per_s * 1000
            if now_ms + wait_ms > deadline_ms:
                return (
                    f"model {model} needs ~{wait_ms:.0f} ms to reach this request ({queued} queued at "
                    f"{m.drain_per_s:.1f}/s); its deadline is in {deadline_ms - now_ms} ms"
                )
        return None
