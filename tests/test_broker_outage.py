"""Broker trouble: the broker goes away; router and workers retry, log it, never exit on their own,
and serve again when it returns (the dev broker is memory-only, so it returns empty)."""

from __future__ import annotations

import asyncio

import pytest

from fleet.broker import EmbeddedBroker, free_port
from fleet.client import FleetClient, FleetTimeout
from fleet.kafka import ensure_topics, fleet_topics
from tests.fixtures_kafka import FleetProcs, wait_ready, write_config

pytestmark = pytest.mark.slow


async def test_fleet_survives_a_broker_outage(tmp_path_factory: pytest.TempPathFactory) -> None:
    d = tmp_path_factory.mktemp("outage")
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port)
    await broker.start()
    cfg = write_config(
        d / "fleet.toml",
        [{"name": "sim", "path": "none", "engine": "simulated", "simulated_tokens_per_s": 500.0}],
        prefix="outage",
    )
    fleet = FleetProcs(cfg, broker.bootstrap, d)
    try:
        await ensure_topics(fleet.settings, fleet_topics(fleet.settings))
        fleet.start_router()
        fleet.start_worker("sim")
        await wait_ready(fleet, ["sim"])
        async with FleetClient(fleet.settings) as c:
            assert (await c.generate("before", model="sim", max_tokens=4, timeout_s=30)).usage.completion_tokens == 4
        await broker.stop()
        async with asyncio.timeout(60):
            client = FleetClient(fleet.settings)
            with pytest.raises(Exception):  # noqa: B017 - nothing to connect to: start() fails fast
                await client.start()
            await client.stop()
        await asyncio.sleep(8)
        assert all(p.poll() is None for p in fleet.procs.values()), "a process exited while the broker was away"
        broker = EmbeddedBroker("127.0.0.1", port)
        await broker.start()
        await ensure_topics(fleet.settings, fleet_topics(fleet.settings))
        async with FleetClient(fleet.settings) as c:
            for attempt in range(20):  # the fleet reconnects and its groups re-form
                try:
                    r = await c.generate("after", model="sim", max_tokens=4, timeout_s=10)
                    break
                except FleetTimeout:
                    if attempt == 19:
                        raise
            assert r.usage.completion_tokens == 4
        for name in ("router", "worker-sim"):  # the outage is logged, structured, and not thousands of times
            lines = [ln for ln in fleet.log(name).splitlines() if "Unable connect to node" in ln]
            assert lines, f"{name} did not log the outage"
            assert all(ln.startswith("{") for ln in lines)
            assert len(lines) < 100, f"{name} logged the outage {len(lines)} times"
    finally:
        fleet.stop_all()
        await broker.stop()
