"""A tenant's budgets per UTC day and month, in tokens and cost: plain data and pure functions.

Admission reserves a request's worst case in the periods current at admission (`reserve`); the worker's
usage record settles it (`settle`: the reservation goes, the actual usage counts). A reservation no usage
record settles is released once its request's deadline is well past (`expire`); a usage record that comes
later still counts, so the books end exact either way. A request passes only if what is spent, plus what is
reserved, plus its own worst case stays within every limit.

A usage record can also come before the reservation it settles: a router that took a tenant over decides again
the requests its predecessor forwarded but did not snapshot, and their usage records (the requests ran) are
often read first. Such a record is held (`early`, bounded, for CLOSED_KEEP_MS) and settles the reservation when
it is made, so the books do not keep a reservation no record will ever settle (a run that caught it: 24
reservations left open after a takeover, the day's cost read 0 of 0.24 spent).
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from typing import TypeVar

import msgspec


def day_key(now_ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now_ms / 1000))


def month_key(now_ms: int) -> str:
    return time.strftime("%Y-%m", time.gmtime(now_ms / 1000))


def next_day_ms(now_ms: int) -> int:
    day = 86_400_000
    return (now_ms // day + 1) * day


def next_month_ms(now_ms: int) -> int:
    t = time.gmtime(now_ms / 1000)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0)) * 1000


class Spent(msgspec.Struct):
    """Settled usage in one period."""

    key: str  # "2026-11-30" or "2026-11"
    tokens: int = 0
    cost: float = 0.0


class Reservation(msgspec.Struct, array_like=True):
    tokens: int
    cost: float
    day: str
    month: str
    expires_ms: int  # released unsettled after this (the deadline plus a grace)


# how long, and for how many requests, what is left of a settled or expired reservation is kept: a late usage
# record, or the other run of a request that ran twice, is charged against it (never beyond the worst case). The
# ledger travels in the tenant's snapshot record, which must stay far under the producer's record limit (1 MiB):
# 1,000 entries of a 200-character id are about 250 KB at worst
CLOSED_KEEP_MS = 600_000
CLOSED_MAX = 1_000
EARLY_MAX = 500  # usage records held for a reservation not made yet (about 120 KB at worst in the snapshot)


class Early(msgspec.Struct, array_like=True):
    """The usage of a request this ledger has not reserved yet (the runs' sum, if it ran twice)."""

    tokens: int
    cost: float
    expires_ms: int


_Expiring = TypeVar("_Expiring", Reservation, Early)  # a ledger table's entries: each has its `expires_ms`


class Ledger(msgspec.Struct):
    day: Spent
    month: Spent
    pending: dict[str, Reservation] = msgspec.field(default_factory=dict)  # by request id
    # settled or expired reservations: what is left of their worst case, until `expires_ms` (oldest first)
    closed: dict[str, Reservation] = msgspec.field(default_factory=dict)
    early: dict[str, Early] = msgspec.field(default_factory=dict)  # usage read before its reservation, by id

    @classmethod
    def new(cls, now_ms: int) -> Ledger:
        return cls(Spent(day_key(now_ms)), Spent(month_key(now_ms)))


@dataclass(frozen=True, slots=True)
class Limits:
    daily_tokens: int | None = None
    monthly_tokens: int | None = None
    daily_cost: float | None = None
    monthly_cost: float | None = None


@dataclass(frozen=True, slots=True)
class OverBudget:
    which: str  # "daily_tokens" | ...
    message: str
    retry_after_ms: int  # until the period rolls over


def roll(ledger: Ledger, now_ms: int) -> None:
    """Start new periods when the day or month changed (what was spent before no longer counts)."""
    d, m = day_key(now_ms), month_key(now_ms)
    if ledger.day.key != d:
        ledger.day = Spent(d)
    if ledger.month.key != m:
        ledger.month = Spent(m)


def committed(ledger: Ledger) -> tuple[int, float, int, float]:
    """(day tokens, day cost, month tokens, month cost): spent plus reserved in the current periods."""
    dt, dc, mt, mc = ledger.day.tokens, ledger.day.cost, ledger.month.tokens, ledger.month.cost
    for r in ledger.pending.values():
        if r.day == ledger.day.key:
            dt += r.tokens
            dc += r.cost
        if r.month == ledger.month.key:
            mt += r.tokens
            mc += r.cost
    return dt, dc, mt, mc


def check(ledger: Ledger, limits: Limits, tokens: int, cost: float, now_ms: int) -> OverBudget | None:
    """Whether a request of this worst case fits every budget (after rolling the periods)."""
    roll(ledger, now_ms)
    dt, dc, mt, mc = committed(ledger)
    day_end, month_end = next_day_ms(now_ms) - now_ms, next_month_ms(now_ms) - now_ms
    for which, used, asked, limit, until in (
        ("daily_tokens", dt, tokens, limits.daily_tokens, day_end),
        ("daily_cost", dc, cost, limits.daily_cost, day_end),
        ("monthly_tokens", mt, tokens, limits.monthly_tokens, month_end),
        ("monthly_cost", mc, cost, limits.monthly_cost, month_end),
    ):
        if limit is not None and used + asked > limit + 1e-12:
            what = "tokens" if which.endswith("tokens") else "cost"
            msg = (
                f"{which.replace('_', ' ')} budget: {used:g} spent or reserved of {limit:g}, this request may take "
                f"{asked:g} {what}"
            )
            return OverBudget(which, msg, until)
    return None


def reserve(
    ledger: Ledger, request_id: str, tokens: int, cost: float, expires_ms: int, now_ms: int
) -> tuple[Reservation, int, float] | None:
    """Reserve a request's worst case; a usage record held for it (`early`) settles it at once (returned as
    `settle` returns it)."""
    ledger.pending[request_id] = Reservation(tokens, cost, day_key(now_ms), month_key(now_ms), expires_ms)
    _prune(ledger.early, now_ms)
    early = ledger.early.pop(request_id, None)
    if early is None:
        return None
    return settle(ledger, request_id, early.tokens, early.cost, now_ms, now_ms)


def hold_early(ledger: Ledger, request_id: str, tokens: int, cost: float, now_ms: int) -> None:
    """Hold a usage record for a request with no reservation here (yet): `reserve` settles it."""
    _prune(ledger.early, now_ms)
    prev = ledger.early.pop(request_id, None)
    if prev is not None:  # the request ran twice: both runs count, capped by the reservation when it comes
        tokens, cost = min(tokens + prev.tokens, 1 << 53), cost + prev.cost
    _put_bounded(ledger.early, request_id, Early(tokens, cost, now_ms + CLOSED_KEEP_MS), EARLY_MAX)


def settle(
    ledger: Ledger, request_id: str, tokens: int, cost: float, ts_ms: int, now_ms: int
) -> tuple[Reservation, int, float] | None:
    """A usage record for `request_id`, settled against the reservation this ledger made for it: the usage counts
    in the periods the reservation was made in, capped at what is left of its worst case (a record claiming more
    cannot charge more than the request could have cost). A record for a request this ledger never reserved is
    not this ledger's to apply now (None; the caller may `hold_early` it): a usage record is input like any other,
    and one naming another tenant's request could otherwise lock that tenant out with an absurd charge. A late
    record, or the other run of a request that ran twice, is charged against what is left of its closed
    reservation for CLOSED_KEEP_MS.
    Returns (the reservation, the tokens and cost charged)."""
    roll(ledger, now_ms)
    _prune(ledger.closed, now_ms)
    r = ledger.pending.pop(request_id, None) or ledger.closed.pop(request_id, None)
    if r is None:
        return None
    tokens, cost = min(tokens, r.tokens), min(cost, r.cost)
    _close(ledger, request_id, Reservation(r.tokens - tokens, r.cost - cost, r.day, r.month, now_ms + CLOSED_KEEP_MS))
    if r.day == ledger.day.key:
        ledger.day.tokens += tokens
        ledger.day.cost += cost
    if r.month == ledger.month.key:
        ledger.month.tokens += tokens
        ledger.month.cost += cost
    return r, tokens, cost


def _close(ledger: Ledger, request_id: str, left: Reservation) -> None:
    _put_bounded(ledger.closed, request_id, left, CLOSED_MAX)


def _put_bounded(table: dict[str, _Expiring], key: str, value: _Expiring, most: int) -> None:
    """Add `key` as the newest entry of `table` (oldest first), dropping the oldest beyond `most`."""
    table[key] = value
    while len(table) > most:
        del table[next(iter(table))]


def _prune(table: dict[str, _Expiring], now_ms: int) -> None:
    """Drop the entries of `table` (oldest first) whose time is up."""
    while table:
        key, entry = next(iter(table.items()))
        if entry.expires_ms > now_ms:
            return
        del table[key]


def expire(ledger: Ledger, now_ms: int) -> list[str]:
    """Release reservations whose requests are long past their deadline; returns their ids."""
    gone = [rid for rid, r in ledger.pending.items() if r.expires_ms <= now_ms]
    for rid in gone:
        r = ledger.pending.pop(rid)
        _close(ledger, rid, Reservation(r.tokens, r.cost, r.day, r.month, now_ms + CLOSED_KEEP_MS))
    _prune(ledger.closed, now_ms)
    return gone
