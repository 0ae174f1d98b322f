"""Tenant limits on real processes, small (benchmarks/policies/tenant_limits.py measures them at full size): a rate
limit holds across three routers and paces batch work instead of refusing it; a budget holds across four
routers while the one that owns the tenant is SIGKILLed or drained, and the new owner's books equal the usage
records; batch requests held for pacing outlive the router holding them."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import pytest

from benchmarks.policies.policy_fleet import Client, start_fleet
from benchmarks.policies.tenant_limits import MAX_TOKENS, PRICE, REQUEST_TOKENS, budget_run, owner_of, rate_run
from contracts.messages import Done
from fleet.tenants import mint_key

pytestmark = pytest.mark.slow


async def test_rate_limits_hold_across_routers_and_batch_work_is_paced(broker: str, tmp_path: Path) -> None:
    r = await rate_run(broker, tmp_path, n=150, batch=20)
    assert r.admitted >= r.burst  # the burst passes
    assert r.admitted <= r.bound, r  # never more than burst + rate x window + one request
    assert r.admitted + r.refused == r.sent and r.refusals_well_formed == r.refused, r
    assert r.alone_p50_ms > 0 and r.direct_p50_ms > 0
    # tokens per minute: admitted tokens within burst + rate x window + one request, the rest refused
    assert REQUEST_TOKENS <= r.tok_admitted_tokens <= r.tok_bound, r
    assert r.tok_admitted_tokens // r.request_tokens + r.tok_refused == r.tok_sent, r
    # batch requests over the rate are all served, none refused, at no more than the rate
    assert r.batch_served == r.batch_sent and r.batch_refused == 0, r
    assert r.batch_sent <= r.burst + r.rps * r.batch_window_s + 1, r


@pytest.mark.parametrize("stop_owner", ["SIGKILL", "SIGTERM"])
async def test_a_budget_holds_across_routers_when_its_owner_dies_or_drains(
    broker: str, tmp_path: Path, stop_owner: str
) -> None:
    routers = 4 if stop_owner == "SIGKILL" else 2  # the chaos with four; a drain needs only a successor
    r = await budget_run(broker, tmp_path, n=240, admits=24, routers=routers, stop_owner=stop_owner)
    assert r.stopped_owner and r.new_owner and r.new_owner != r.stopped_owner, r
    assert r.admitted == r.admits, r  # each request costs exactly its reservation: the budget admits exactly this
    assert r.refused_budget == r.sent - r.admitted and not r.other, r
    # not reset by the takeover, not counted twice: the owner's books equal the usage records
    per_request = MAX_TOKENS * PRICE / 1000
    assert r.usage_cost == pytest.approx(r.admitted * per_request)
    assert r.ledger_cost == pytest.approx(r.usage_cost) and r.pending_after == 0, r


async def test_held_batch_requests_outlive_a_sigkill_of_the_router_pacing_them(broker: str, tmp_path: Path) -> None:
    key, h = mint_key()
    tenants = f'[[tenants]]\nname = "acme"\napi_key_hashes = ["{h}"]\nrequests_per_s = 1.0\nburst_requests = 1\n'
    fleet = await start_fleet(broker, tmp_path, f"hb{uuid.uuid4().hex[:6]}", 2, extra=tenants)
    try:
        async with Client(fleet.settings, key, "acme") as client:
            rids = [f"b-{i}" for i in range(12)]
            await client.send(rids, priority="batch")  # 1 at once, then one a second: the rest are held
            # any two done (they are paced in the order they reach the owner, not in the order of their ids)
            until = time.monotonic() + 30
            while len(client.terminal) < 2 and time.monotonic() < until:  # noqa: ASYNC110 - bounded
                await asyncio.sleep(0.02)
            owner = owner_of(fleet, "acme")
            assert owner is not None
            held = [r for r in rids if r not in client.terminal]
            fleet.signal(owner, signal.SIGKILL)  # with most of them held in its memory, uncommitted
            while owner in fleet.running("router-"):  # noqa: ASYNC110 - gone before anyone asks who owns it now
                await asyncio.sleep(0.05)
            assert len(held) >= 6, f"the kill must find requests held, not {held}"
            await client.wait(rids, 90)
            outcomes = [client.terminal.get(r, (None, 0.0))[0] for r in rids]
            assert all(isinstance(ev, Done) for ev in outcomes), outcomes  # none lost, none refused
            assert owner_of(fleet, "acme") not in (None, owner)
    finally:
        fleet.stop_all()
