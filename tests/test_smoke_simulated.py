"""First light: a request through router and a simulated worker (no model)."""

from __future__ import annotations

from fleet.client import FleetClient
from tests.fixtures_kafka import FleetProcs


async def test_simulated_roundtrip(simulated_fleet: FleetProcs) -> None:
    async with FleetClient(simulated_fleet.settings) as c:
        r = await c.generate("hello world", model="sim-a", max_tokens=10, timeout_s=30)
    assert r.usage.completion_tokens == 10
    assert r.model == "sim-a"


async def test_auto_done_and_usage_say_which_tier_served_it(simulated_fleet: FleetProcs) -> None:
    from contracts.messages import Done
    from router.cost import read_usage

    async with FleetClient(simulated_fleet.settings) as c:
        done = [
            ev async for ev in c.stream("hi there", model="auto", max_tokens=4, timeout_s=30) if isinstance(ev, Done)
        ]
    assert done and done[0].tier == "simple" and done[0].model == "sim-a"
    for _ in range(100):  # the usage record is batched off the hot path
        mine = [u for u in await read_usage(simulated_fleet.settings) if u.id == done[0].id]
        if mine:
            break
    assert mine and mine[0].tier == "simple"
