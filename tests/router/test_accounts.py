"""Rate buckets, budget ledgers and tenant accounts on plain data (router/policies/rate_limit.py, budget.py,
accounts.py): what passes never exceeds the limit plus one request, reservations settle and expire exactly,
periods roll over, and a snapshot round-trips."""

from __future__ import annotations

import calendar
import random

import msgspec
import pytest

from contracts.messages import Request
from fleet.settings import ModelSettings, RouterSettings, TenantSettings
from router.accounts import budget
from router.accounts.account import Account, TenantState, worst_case, worst_case_tokens
from router.accounts.budget import Ledger, Limits
from router.policies import rate_limit
from router.policies.rate_limit import Rate

T0 = calendar.timegm((2026, 11, 29, 12, 0, 0, 0, 0, 0)) * 1000
R = RouterSettings()


@pytest.mark.parametrize("seed", range(5))
def test_a_bucket_never_passes_more_than_burst_plus_rate_times_window_plus_one(seed: int) -> None:
    rnd = random.Random(seed)
    r = Rate(rate_per_s=rnd.choice([1.0, 5.0, 50.0]), burst=rnd.choice([1.0, 3.0, 20.0]))
    b = r.new(T0)
    now, passed = T0, []
    for _ in range(5000):
        now += rnd.choice([0, 0, 1, 3, 10, 50, 400])
        cost = rnd.choice([1.0, 1.0, 2.0, 30.0])  # 30 is above some bursts: passes only when full
        if rate_limit.wait_ms(b, r, cost, now) == 0:
            rate_limit.take(b, r, cost, now)
            passed.append((now, cost))
    window_ms = now - T0
    total = sum(c for _, c in passed)
    assert total <= r.burst + r.rate_per_s * window_ms / 1000 + max(c for _, c in passed)
    assert len(passed) > 10  # it does let traffic through


def test_wait_ms_says_when_a_request_passes() -> None:
    r = Rate(rate_per_s=10.0, burst=2.0)
    b = r.new(T0)
    rate_limit.take(b, r, 2.0, T0)
    w = rate_limit.wait_ms(b, r, 1.0, T0)
    assert w == 100
    assert rate_limit.wait_ms(b, r, 1.0, T0 + w - 1) > 0 and rate_limit.wait_ms(b, r, 1.0, T0 + w) == 0
    rate_limit.give_back(b, r, 5.0, T0)  # capped at the burst
    assert rate_limit.level(b, r, T0) == 2.0


def test_budget_reserves_settles_and_rolls_over() -> None:
    led = Ledger.new(T0)
    lim = Limits(daily_tokens=1000, monthly_cost=1.0)
    assert budget.check(led, lim, 600, 0.1, T0) is None
    budget.reserve(led, "a", 600, 0.1, T0 + 60_000, T0)
    over = budget.check(led, lim, 600, 0.1, T0)
    assert over is not None and over.which == "daily_tokens"
    assert over.retry_after_ms == 12 * 3600 * 1000  # until midnight UTC
    budget.settle(led, "a", 150, 0.02, T0, T0)  # the actual usage replaces the reservation
    assert led.day.tokens == 150 and not led.pending
    assert budget.check(led, lim, 600, 0.1, T0) is None
    # a usage record for a request never reserved here is not this ledger's to apply (a forged one could charge
    # any tenant anything); the other run of a request that ran twice counts, within the worst case left
    assert budget.settle(led, "b", 100, 0.01, T0, T0) is None and led.day.tokens == 150
    assert budget.settle(led, "a", 1_000_000, 50.0, T0, T0) is not None  # capped at 600 - 150 tokens left
    assert led.day.tokens == 600 and led.day.cost == pytest.approx(0.1)
    assert budget.settle(led, "a", 5, 0.0, T0, T0) is not None and led.day.tokens == 600  # nothing left
    budget.reserve(led, "b", 100, 0.01, T0 + 60_000, T0)
    budget.settle(led, "b", 100, 0.01, T0, T0)
    assert led.day.tokens == 700
    # the next day the daily count starts again; the month goes on
    tomorrow = T0 + 86_400_000
    assert budget.check(led, lim, 1000, 0.1, tomorrow) is None
    assert led.day.tokens == 0 and led.month.cost == pytest.approx(0.11)
    # a month's cost budget: December starts afresh
    over = budget.check(led, lim, 10, 0.9, tomorrow)
    assert over is not None and over.which == "monthly_cost"
    assert over.retry_after_ms == calendar.timegm((2026, 12, 1, 0, 0, 0, 0, 0, 0)) * 1000 - tomorrow


def test_unsettled_reservations_expire_and_late_usage_still_counts() -> None:
    led = Ledger.new(T0)
    budget.reserve(led, "a", 500, 0.0, T0 + 1000, T0)
    assert budget.expire(led, T0 + 999) == [] and budget.expire(led, T0 + 1000) == ["a"]
    assert budget.committed(led)[0] == 0
    budget.settle(led, "a", 120, 0.0, T0 + 5000, T0 + 5000)
    assert led.day.tokens == 120


def tenant(**kw: object) -> TenantSettings:
    return msgspec.convert({"name": "acme", **kw}, TenantSettings)


def test_an_account_applies_each_usage_record_once_by_its_offset() -> None:
    acc = Account.new(tenant(daily_tokens=10_000, tokens_per_min=6000), T0)
    w = worst_case(Request(id="r", reply_to="x", prompt="hello", max_tokens=100), ModelSettings(name="m", path="p"), R)
    acc.take_rate(w.tokens, T0)
    acc.reserve("r", w, T0 + 10_000, T0)
    assert acc.admitted("r")
    assert acc.settle(0, 7, "r", 20, 0.0, T0, T0)
    assert not acc.settle(0, 7, "r", 20, 0.0, T0, T0)  # the same record again (a replay): not applied
    assert not acc.settle(0, 3, "r", 20, 0.0, T0, T0)  # an older one: applied before the snapshot
    assert acc.state.ledger.day.tokens == 20 and acc.state.usage_next == {0: 8}
    # the minute's token rate got back what the request reserved and did not use
    assert acc.state.tokens is not None and rate_limit.level(acc.state.tokens, Rate(100.0, 6000.0), T0) == 5980


def test_a_snapshot_round_trips() -> None:
    acc = Account.new(tenant(requests_per_s=2.0, daily_cost=5.0), T0)
    acc.take_rate(10, T0)
    w = worst_case(Request(id="r", reply_to="x", prompt="hi", max_tokens=8), ModelSettings(name="m", path="p"), R)
    acc.reserve("r", w, T0 + 1, T0)
    acc.state.usage_next = {0: 4, 1: 9}
    raw = msgspec.msgpack.encode(acc.state)
    back = msgspec.msgpack.decode(raw, type=TenantState)
    assert back == acc.state


def test_the_worst_case_bounds_the_prompt_from_above() -> None:
    req = Request(id="r", reply_to="x", prompt="héllo", max_tokens=10)  # 6 UTF-8 bytes
    assert worst_case_tokens(req, R) == 6 + R.template_tokens + 10
    messages = [{"role": "system", "content": "ab"}, {"role": "user", "content": "c"}]
    chat = msgspec.convert({"id": "r", "reply_to": "x", "messages": messages}, Request)
    assert worst_case_tokens(chat, R) == 3 + R.template_tokens + 2 * R.message_tokens + chat.max_tokens
    m = ModelSettings(name="m", path="p", price_per_1k_prompt=1.0, price_per_1k_completion=2.0)
    w = worst_case(req, m, R)
    assert w.cost == pytest.approx(((6 + R.template_tokens) * 1.0 + 10 * 2.0) / 1000)


def test_a_usage_record_with_negative_non_finite_or_absurd_values_never_changes_the_books() -> None:
    acc = Account.new(tenant(daily_tokens=1000, daily_cost=1.0), T0)
    w = worst_case(Request(id="r", reply_to="x", prompt="hi", max_tokens=8), ModelSettings(name="m", path="p"), R)
    acc.reserve("r", w, T0 + 10_000, T0)
    for i, (tokens, cost) in enumerate([(-500, 0.0), (5, -1.0), (5, float("nan")), (5, float("inf")), (1 << 60, 0.0)]):
        assert not acc.settle(0, i, "r", tokens, cost, T0, T0)
    assert acc.state.ledger.day.tokens == 0 and acc.state.ledger.day.cost == 0.0 and acc.admitted("r")
    assert acc.state.usage_next == {0: 5}  # passed over, not waited for
    assert acc.settle(0, 5, "r", 12, 0.001, T0, T0) and acc.state.ledger.day.tokens == 12


def test_closed_reservations_stay_bounded_so_the_snapshot_fits_a_record() -> None:
    """What is kept of settled reservations travels in the tenant's snapshot: a busy tenant's hour of traffic
    must not grow it past the producer's record limit (then no snapshot, so no commit, would ever succeed)."""
    acc = Account.new(tenant(daily_tokens=10**12), T0)
    w = worst_case(Request(id="r", reply_to="x", prompt="hi", max_tokens=8), ModelSettings(name="m", path="p"), R)
    for i in range(3 * budget.CLOSED_MAX):
        rid = f"{i:0200d}"  # the longest id the contract allows
        acc.reserve(rid, w, T0 + 10_000, T0)
        assert acc.settle(0, i, rid, 1, 0.0, T0, T0)
    assert len(acc.state.ledger.closed) == budget.CLOSED_MAX
    assert len(msgspec.msgpack.encode(acc.state)) < 512 * 1024
    assert acc.settle(0, 10**6, f"{3 * budget.CLOSED_MAX - 1:0200d}", 1, 0.0, T0, T0)  # the newest is still there
    assert not acc.settle(0, 10**6 + 1, f"{0:0200d}", 1, 0.0, T0, T0)  # the oldest went
    assert not acc.settle(
        0,
        10**6 + 2,
        f"{3 * budget.CLOSED_MAX - 2:0200d}",
        1,
        0.0,
        T0 + budget.CLOSED_KEEP_MS,
        T0 + budget.CLOSED_KEEP_MS,
    )


def test_usage_read_before_its_reservation_settles_it_when_it_is_made() -> None:
    """A router that took a tenant over decides again what its predecessor forwarded without a snapshot; those
    requests ran, and their usage records are often read before the new reservations exist. Each is held and
    settles its reservation when it is made: none stays open for want of a record already read (a takeover in
    the suite left 24 open, the day's cost at 0 of 0.24). Two runs of one request count together, never beyond
    its worst case, and a held record that no reservation claims goes after CLOSED_KEEP_MS."""
    acc = Account.new(tenant(daily_cost=1.0, tokens_per_min=6000), T0)
    m = ModelSettings(name="m", path="p", price_per_1k_completion=1.0)
    w = worst_case(Request(id="r", reply_to="x", prompt="hi", max_tokens=100), m, R)
    assert not acc.settle(0, 0, "r", 30, 0.02, T0, T0)  # no reservation yet: held, not applied
    assert not acc.settle(0, 1, "twice", 80, 0.08, T0, T0)
    assert not acc.settle(0, 2, "twice", 80, 0.08, T0, T0)  # the other run of the same request
    assert not acc.settle(0, 3, "never", 5, 0.5, T0, T0)
    assert acc.state.ledger.day.cost == 0.0 and acc.dirty
    acc.take_rate(w.tokens, T0)
    acc.reserve("r", w, T0 + 10_000, T0 + 1)
    acc.take_rate(w.tokens, T0)
    acc.reserve("twice", w, T0 + 10_000, T0 + 1)
    led = acc.state.ledger
    assert not led.pending and set(led.early) == {"never"}
    assert led.day.cost == pytest.approx(0.02 + w.cost)  # "twice": 0.16 used, capped at its worst case
    assert led.day.tokens == 30 + w.tokens
    # the minute's rate got back what "r" reserved and did not use ("twice" used all of it)
    assert acc.state.tokens is not None
    level = rate_limit.level(acc.state.tokens, Rate(100.0, 6000.0), T0 + 1)
    assert level == pytest.approx(6000 - 2 * w.tokens + (w.tokens - 30), abs=1)
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(acc.state), type=TenantState)
    assert back == acc.state  # what is held travels in the snapshot
    acc.reserve("never", w, T0 + 10_000, T0 + budget.CLOSED_KEEP_MS + 2)  # held past its time: gone, not charged
    assert "never" in led.pending and not led.early and led.day.cost == pytest.approx(0.02 + w.cost)


def test_held_usage_stays_bounded_so_the_snapshot_fits_a_record() -> None:
    acc = Account.new(tenant(daily_tokens=10**12), T0)
    w = worst_case(Request(id="r", reply_to="x", prompt="hi", max_tokens=8), ModelSettings(name="m", path="p"), R)
    for i in range(3 * budget.CLOSED_MAX):  # closed reservations at their bound
        rid = f"c{i:0199d}"
        acc.reserve(rid, w, T0 + 10_000, T0)
        assert acc.settle(0, i, rid, 1, 0.0, T0, T0)
    for i in range(3 * budget.EARLY_MAX):  # and records nobody reserved (forged, or another tenant's ids)
        assert not acc.settle(1, i, f"e{i:0199d}", 1, 0.0, T0, T0)
    assert len(acc.state.ledger.early) == budget.EARLY_MAX and f"e{0:0199d}" not in acc.state.ledger.early
    assert len(msgspec.msgpack.encode(acc.state)) < 512 * 1024
