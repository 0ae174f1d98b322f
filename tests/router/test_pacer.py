"""router/pacer.py on hand-made records and accounts: held batch requests are released oldest first as their
tenant's rate admits them, a retriable failure holds them again at the front without taking the rate twice,
and a partition that left the router drops what it held."""

from __future__ import annotations

from typing import Any

import msgspec
from aiokafka import ConsumerRecord, TopicPartition

from fleet.settings import Settings, TenantSettings
from router.accounts.account import Account
from router.accounts.view import AccountsView
from router.ledger import Ledger
from router.pacer import Pacer
from router.stages.base import Hold

TP = TopicPartition("llm.requests.t.acme", 0)
TENANT = msgspec.convert({"name": "acme", "requests_per_s": 1.0, "burst_requests": 1}, TenantSettings)


def rec(offset: int) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(TP.topic, TP.partition, offset, 0, 0, None, b"{}", None, 0, 2, [])


def pacer() -> tuple[Pacer, Ledger[TopicPartition], Account]:
    view = AccountsView(Settings(tenants=[TENANT]))
    account = view.accounts["acme"] = Account.new(TENANT, 0)
    ledger: Ledger[TopicPartition] = Ledger()
    return Pacer(view, ledger), ledger, account


def test_held_requests_are_released_oldest_first_one_per_token_of_the_rate() -> None:
    p, ledger, _ = pacer()
    for o in (3, 4, 5):
        assert p.hold(TP, rec(o), Hold("acme", 10))
    assert ledger(TP).commit_point(6) == 3
    first = p.due(0)  # the burst of one admits one
    assert [r.rec.offset for r in first] == [3]
    assert p.due(10) == []  # 10 ms later: no token yet
    second = p.due(1000)
    assert [r.rec.offset for r in second] == [4]
    for r in (*first, *second):
        p.done(r)
    assert ledger(TP).commit_point(6) == 5  # the partition may be committed up to the one still held


def test_a_request_whose_send_failed_is_held_again_first_without_taking_the_rate_twice() -> None:
    p, _, account = pacer()
    p.hold(TP, rec(0), Hold("acme", 10))
    p.hold(TP, rec(1), Hold("acme", 10))
    (r,) = p.due(0)
    p.again([r])
    assert [h.key for h in account.held] == [(TP, 0), (TP, 1)] and account.held[0].taken
    (again,) = p.due(1)  # no new token, but its rate was taken already
    assert again.rec.offset == 0


def test_a_request_of_an_unknown_tenant_is_not_held_and_a_revoked_partition_s_requests_are_dropped() -> None:
    p, ledger, account = pacer()
    assert not p.hold(TP, rec(0), Hold("other", 1))
    p.hold(TP, rec(1), Hold("acme", 1))
    ledger.forget(TP)  # revoked: its new owner redoes it from the committed offset
    assert p.due(10_000) == [] and not account.held


def test_a_failed_request_is_not_held_again_on_an_account_that_left_the_router() -> None:
    p, _, account = pacer()
    p.hold(TP, rec(0), Hold("acme", 1))
    (r,) = p.due(0)
    del p.accounts.accounts["acme"]  # the tenant's partition was revoked meanwhile
    p.again([r])
    assert not account.held
