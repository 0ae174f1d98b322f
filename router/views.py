"""State the stages read, fed by the Kafka loop and its tasks and handed to the stages: the dedup window with
the ids this batch already forwards, each model's load (router/feeds.py keeps it current from the model
topics' offsets and the status topic), and the accounts of the tenants this router owns (the rate-limit and
budget stages take from them; router/tenant_store.py loads, settles and snapshots them)."""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass

import structlog

from fleet.settings import Settings
from router.policies.accounts import Account
from router.policies.breaker import Breaker, BreakerConfig, BreakerState, Transition
from router.policies.dedup import DedupWindow
from router.policies.fallback import RetryBudget
from router.policies.overload import LoadTracker

log = structlog.get_logger(__name__)

OK_FINISHES = frozenset({"stop", "length", "cancelled"})  # usage finishes that say the model served

DedupKey = tuple[str | None, str]  # (authenticated tenant, request id); None: the default tenant


class DedupView:
    """(tenant, id) keys forwarded within the window, and those being forwarded by the batch in hand (not yet
    acknowledged). Keyed by tenant too: one tenant's id never makes another tenant's request a duplicate."""

    def __init__(self, window_s: float, max_entries: int) -> None:
        self.window = DedupWindow(window_s, max_entries)
        self._in_batch: set[DedupKey] = set()

    def begin_batch(self) -> None:
        """A new batch: nothing of it is being forwarded yet."""
        self._in_batch = set()

    def seen(self, tenant: str | None, request_id: str, now_ms: int) -> bool:
        key = (tenant, request_id)
        return key in self._in_batch or self.window.seen(key, now_ms / 1000)

    def forwarding(self, tenant: str | None, request_id: str) -> None:
        self._in_batch.add((tenant, request_id))

    def forwarded(self, tenant: str | None, request_id: str, now_ms: int) -> None:
        """Acknowledged by the broker: a redo must not forward it again."""
        self.window.record((tenant, request_id), now_ms / 1000)


@dataclass(slots=True)
class AccountsView:
    """The tenants whose counters this router owns: loaded from their last snapshot when partition 0 of their
    intake topic was assigned here (router/tenant_store.py), dropped when it is revoked."""

    accounts: dict[str, Account]

    def get(self, tenant: str) -> Account | None:
        return self.accounts.get(tenant)


class HealthView:
    """Each model's health as this router sees it: live workers and capacity (status heartbeats), outcomes over
    a sliding window and the breaker they drive (router/policies/breaker.py), and the fleet's retry budget.

    Outcomes are what the router can read on Kafka: usage records (`finish` stop, length or cancelled is a
    success; expired, or any other, a failure), DLQ copies of a model topic's records (`fleet-error-code`:
    poison, internal...), and requests this router forwarded with a deadline that have no usage record
    `outcome_grace_ms` past it (expired in the backlog, or lost with a dead worker: a worker that refuses an
    expired request writes no usage record). Every transition is logged with its reason."""

    def __init__(self, settings: Settings, now_ms: int, max_pending: int = 100_000) -> None:
        r = settings.router
        self.config = BreakerConfig(
            window_ms=int(r.breaker_window_s * 1000),
            error_rate=r.breaker_error_rate,
            min_requests=r.breaker_min_requests,
            no_worker_ms=r.breaker_no_worker_ms,
            cooldown_ms=r.breaker_cooldown_ms,
            probes=r.breaker_probes,
            start_grace_ms=r.breaker_start_grace_ms,
        )
        self.breakers = {m: Breaker(m, self.config, now_ms) for m in settings.model_names}
        self.capacity: dict[str, int] = dict.fromkeys(settings.model_names, 0)
        self.budget = RetryBudget(r.retry_budget_per_s, r.retry_budget_burst)
        self.grace_ms = r.breaker_outcome_grace_ms
        self.max_pending = max_pending
        self.transitions: list[Transition] = []  # the last few, newest last
        self._pending: OrderedDict[str, tuple[str, int]] = OrderedDict()  # id -> (model, deadline_ms)
        self._blind_ms: int | None = None
        self._start_grace_ms = max(r.breaker_no_worker_ms, r.breaker_start_grace_ms)
        self._deadlines: list[tuple[int, str]] = []  # heap of (deadline_ms, id); ids no longer pending are skipped

    def state(self, model: str) -> BreakerState:
        b = self.breakers.get(model)
        return b.state if b is not None else BreakerState.CLOSED

    def admit(self, model: str, now_ms: int) -> bool:
        b = self.breakers.get(model)
        return b is None or b.admit(now_ms)

    def forwarded(self, request_id: str, model: str, deadline_ms: int | None) -> None:
        """A request this router forwarded: a failure if no usage record comes by its deadline and the grace."""
        if deadline_ms is None or model not in self.breakers:
            return
        self._pending[request_id] = (model, deadline_ms)
        self._pending.move_to_end(request_id)
        heapq.heappush(self._deadlines, (deadline_ms, request_id))
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
        if len(self._deadlines) > 2 * self.max_pending + 1000:  # mostly settled ids: rebuild from what is pending
            self._deadlines = [(d, rid) for rid, (_, d) in self._pending.items()]
            heapq.heapify(self._deadlines)

    def workers(self, model: str, live: int, capacity: int, now_ms: int) -> None:
        b = self.breakers.get(model)
        if b is not None:
            self.capacity[model] = capacity
            self._note(b.workers(live, now_ms))

    def blind(self, now_ms: int) -> None:
        """The feed could not see the fleet (the broker did not answer, or this process stalled): silence opens
        no breaker, and deadlines are not counted missed, until the start grace has passed (what was written
        meanwhile, heartbeats and usage records, is read by then)."""
        self._blind_ms = now_ms
        for b in self.breakers.values():
            b.blind(now_ms)

    def usage(self, request_id: str, model: str, finish: str, now_ms: int) -> None:
        self._pending.pop(request_id, None)
        b = self.breakers.get(model)
        if b is not None:
            self._note(b.outcome(finish not in OK_FINISHES, now_ms, f"usage {finish}"))

    def dead_letter(self, request_id: str | None, model: str, code: str, now_ms: int) -> None:
        if request_id is not None:
            self._pending.pop(request_id, None)
        b = self.breakers.get(model)
        if b is not None:
            self._note(b.outcome(True, now_ms, f"dlq {code}"))

    def tick(self, now_ms: int) -> None:
        """Time passes: missed deadlines count as failures; cool-downs and worker expiries take effect."""
        edge = now_ms - self.grace_ms
        if self._blind_ms is not None and now_ms - self._blind_ms < self._start_grace_ms:
            edge = -1  # usage records written while the feed was blind may not be read yet
        while self._deadlines and self._deadlines[0][0] < edge:
            deadline, rid = heapq.heappop(self._deadlines)
            entry = self._pending.get(rid)
            if entry is None or entry[1] != deadline:
                continue  # settled, or forwarded again with another deadline (its own heap entry)
            del self._pending[rid]
            self._note(self.breakers[entry[0]].outcome(True, now_ms, "no outcome by the deadline"))
        for b in self.breakers.values():
            self._note(b.tick(now_ms))

    def summary(self, now_ms: int) -> dict[str, str]:
        """model -> "<state> <live>w <failures>/<outcomes>" for status lines and the health file."""
        out = {}
        for m, b in self.breakers.items():
            f, n = b.error_rate(now_ms)
            out[m] = f"{b.state.value} {b.live_workers}w {f}/{n}"
        return out

    def _note(self, t: Transition | None) -> None:
        if t is None:
            return
        self.transitions = [*self.transitions[-31:], t]
        log.warning("router.breaker", model=t.model, old=t.old.value, new=t.new.value, reason=t.reason)


@dataclass(slots=True)
class Views:
    load: LoadTracker
    dedup: DedupView
    accounts: AccountsView
    health: HealthView

    @classmethod
    def from_settings(cls, settings: Settings, now_ms: int = 0) -> Views:
        r = settings.router
        return cls(
            LoadTracker(r.overload_max_backlog),
            DedupView(r.dedup_window_s, r.dedup_max_entries),
            AccountsView({}),
            HealthView(settings, now_ms),
        )
