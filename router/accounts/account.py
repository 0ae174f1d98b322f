"""A tenant's account: its rate buckets and budget ledger together, as the owning router holds them and
snapshots them (`TenantState`, written to the compacted `llm.tenants.state` topic by router/accounts/store.py).

Pure: no Kafka, no clock. The stages ask and take (router/stages/rate_limit.py, budget.py); the usage feed
settles; the snapshot says how far the account has seen its intake partition and the usage topic, so a new
owner continues exactly where the old one stopped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.messages import Request
from fleet.settings import ModelSettings, RouterSettings, TenantSettings
from router.accounts import budget
from router.accounts.budget import Ledger, Limits, OverBudget
from router.policies import rate_limit
from router.policies.rate_limit import Bucket, Rate

STATE_VERSION = 1


class TenantState(msgspec.Struct):
    """What survives a router: the snapshot of one tenant's counters."""

    tenant: str
    ledger: Ledger
    requests: Bucket | None = None
    tokens: Bucket | None = None
    epoch: int = 0  # +1 each time a router takes the tenant over: a stale owner's late write loses
    next_offset: int = 0  # the tenant's intake partition: every record before it is reflected here
    usage_next: dict[int, int] = msgspec.field(default_factory=dict)  # usage partition -> next offset to apply
    written_ms: int = 0
    version: int = STATE_VERSION


@dataclass(frozen=True, slots=True)
class WorstCase:
    prompt_tokens: int  # estimated from above
    tokens: int  # prompt_tokens + max_tokens
    cost: float


def prompt_tokens_most(req: Request, r: RouterSettings) -> int:
    """The most tokens a prompt can be: its UTF-8 bytes (a byte-level BPE token covers at least one byte)
    plus the chat template's tokens."""
    if req.messages is not None:
        text = sum(len(m.content.encode("utf-8", "surrogatepass")) for m in req.messages)
        return text + r.template_tokens + r.message_tokens * len(req.messages)
    return len((req.prompt or "").encode("utf-8", "surrogatepass")) + r.template_tokens


def worst_case_tokens(req: Request, r: RouterSettings) -> int:
    return prompt_tokens_most(req, r) + req.max_tokens


def worst_case(req: Request, model: ModelSettings, r: RouterSettings) -> WorstCase:
    """A request's most tokens, priced at the model's rates."""
    prompt = prompt_tokens_most(req, r)
    cost = (prompt * model.price_per_1k_prompt + req.max_tokens * model.price_per_1k_completion) / 1000
    return WorstCase(prompt, prompt + req.max_tokens, cost)


@dataclass(frozen=True, slots=True)
class Limited:
    which: str  # "requests_per_s" | "tokens_per_min"
    retry_after_ms: int


@dataclass(slots=True)
class Held:
    """A paced batch request the router holds until the tenant's rate admits it."""

    key: Any  # the pacer's handle on the record (its topic-partition and offset)
    tokens: int
    taken: bool = False  # its rate was taken already (released once, its send failed retriably)


@dataclass(slots=True)
class Account:
    settings: TenantSettings
    state: TenantState
    held: deque[Held] = field(default_factory=deque)
    dirty: bool = False  # changed since the last snapshot
    # from the settings, once: the tenant's rates (None: no such limit) and budgets
    rps: Rate | None = field(init=False)
    tpm: Rate | None = field(init=False)
    limits: Limits = field(init=False)

    def __post_init__(self) -> None:
        t = self.settings
        rps_burst = float(t.burst_requests or max(1.0, t.requests_per_s or 0.0))
        self.rps = Rate(t.requests_per_s, rps_burst) if t.requests_per_s else None
        self.tpm = Rate(t.tokens_per_min / 60, float(t.burst_tokens or t.tokens_per_min)) if t.tokens_per_min else None
        self.limits = Limits(t.daily_tokens, t.monthly_tokens, t.daily_cost, t.monthly_cost)

    @classmethod
    def new(cls, t: TenantSettings, now_ms: int) -> Account:
        return cls(t, TenantState(t.name, Ledger.new(now_ms)))

    # -- rates ---------------------------------------------------------------------------------------------
    def _buckets(self, tokens: int, now_ms: int) -> list[tuple[str, Rate, Bucket, float]]:
        """(limit, rate, its bucket in the state, what a request of `tokens` costs it), each configured limit."""
        s, out = self.state, []
        if self.rps is not None:
            s.requests = s.requests or self.rps.new(now_ms)
            out.append(("requests_per_s", self.rps, s.requests, 1.0))
        if self.tpm is not None:
            s.tokens = s.tokens or self.tpm.new(now_ms)
            out.append(("tokens_per_min", self.tpm, s.tokens, float(tokens)))
        return out

    def rate_wait(self, tokens: int, now_ms: int) -> Limited | None:
        """None when a request of `tokens` may pass now; else which limit holds it and for how long."""
        worst: Limited | None = None
        for which, rate, bucket, cost in self._buckets(tokens, now_ms):
            w = rate_limit.wait_ms(bucket, rate, cost, now_ms)
            if w and (worst is None or w > worst.retry_after_ms):
                worst = Limited(which, w)
        return worst

    def take_rate(self, tokens: int, now_ms: int) -> None:
        for _, rate, bucket, cost in self._buckets(tokens, now_ms):
            rate_limit.take(bucket, rate, cost, now_ms)
        self.dirty = True

    # -- budgets -------------------------------------------------------------------------------------------
    def admitted(self, request_id: str) -> bool:
        """Whether this request already holds a reservation (a redo after a restart: never counted twice)."""
        return request_id in self.state.ledger.pending

    def over_budget(self, w: WorstCase, now_ms: int) -> OverBudget | None:
        return budget.check(self.state.ledger, self.limits, w.tokens, w.cost, now_ms)

    def reserve(self, request_id: str, w: WorstCase, expires_ms: int, now_ms: int) -> None:
        settled = budget.reserve(self.state.ledger, request_id, w.tokens, w.cost, expires_ms, now_ms)
        self.dirty = True
        if settled is not None:  # its usage was read first (a takeover deciding again what already ran)
            self._give_back(settled, now_ms)

    # -- usage and time ------------------------------------------------------------------------------------
    def settle(
        self, partition: int, offset: int, request_id: str, tokens: int, cost: float, ts_ms: int, now_ms: int
    ) -> bool:
        """Apply one usage record at (partition, offset) of the usage topic, once: a record before this
        account's position there was applied already (before a snapshot, or by an earlier owner). A record whose
        tokens or cost are negative, not finite or absurd is passed over (False): usage is only ever added."""
        usage_next = self.state.usage_next
        if offset < usage_next.get(partition, 0):
            return False
        usage_next[partition] = offset + 1
        if not (0 <= tokens < 1 << 53 and 0.0 <= cost < 1e15):  # NaN fails both: never lowers or poisons the books
            return False
        first = self.admitted(request_id)  # the reservation's first settlement (a late one finds it closed)
        settled = budget.settle(self.state.ledger, request_id, tokens, cost, ts_ms, now_ms)
        self.dirty = True
        if settled is None:  # no reservation here yet: held, it settles the reservation when one is made
            budget.hold_early(self.state.ledger, request_id, tokens, cost, now_ms)
            return False
        if first:
            self._give_back(settled, now_ms)
        return True

    def _give_back(self, settled: tuple[budget.Reservation, int, float], now_ms: int) -> None:
        """Tokens reserved and not used go back to the minute's rate (at a reservation's first settlement)."""
        r, charged, _ = settled
        if self.tpm is not None:
            self.state.tokens = self.state.tokens or self.tpm.new(now_ms)
            rate_limit.give_back(self.state.tokens, self.tpm, max(0, r.tokens - charged), now_ms)

    def expire(self, now_ms: int) -> list[str]:
        gone = budget.expire(self.state.ledger, now_ms)
        if gone:
            self.dirty = True
        return gone
