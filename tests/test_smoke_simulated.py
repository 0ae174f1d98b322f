"""First light: a request through router and a simulated worker (no model)."""

from __future__ import annotations

from fleet.client import FleetClient
from tests.fixtures_kafka import FleetProcs


async def test_simulated_roundtrip(simulated_fleet: FleetProcs) -> None:
    async with FleetClient(simulated_fleet.settings) as c:
        r = await c.generate("hello world", model="sim-a", max_tokens=10, timeout_s=30)
    assert r.usage.completion_tokens == 10
    assert r.model == "sim-a"
