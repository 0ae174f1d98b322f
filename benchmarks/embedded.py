"""`fleet bench run --start-fleet`: an embedded broker, a router and workers for the run."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from benchmarks.procs import Procs, wait_workers
from fleet.settings import EngineKind, Settings


@contextlib.asynccontextmanager
async def embedded_fleet(
    settings: Settings, models: list[str], *, config: Path | None = None, logs: Path | None = None
) -> AsyncIterator[Settings]:
    """Start a Tansu broker on a free port, the fleet's topics, a router and one worker per model;
    yields the settings pointing at that broker. Everything is stopped on exit."""
    from fleet.broker import EmbeddedBroker, free_port
    from fleet.kafka import ensure_topics, fleet_topics

    logs = logs or Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    broker = EmbeddedBroker(settings.kafka.embedded_host, free_port(), log_file=logs / "broker.log")
    await broker.start()
    running = msgspec.structs.replace(
        settings, kafka=msgspec.structs.replace(settings.kafka, bootstrap_servers=broker.bootstrap)
    )
    procs = Procs(broker.bootstrap, logs, config)
    try:
        wanted = [settings.model(m) for m in models]
        if any(m.engine is EngineKind.CONTINUOUS and "demo:" in f"{m.path} {m.draft_path}" for m in wanted):
            import fleet.demo_models as demo

            ensure = getattr(demo, "ensure_demo_models", None)  # builds the demo models once (minutes)
            if ensure is not None:
                await asyncio.to_thread(ensure, settings.cache_path, progress=True)
        await ensure_topics(running, fleet_topics(running))
        procs.start("router", "router")
        for m in models:
            procs.start_worker(m)
        for m in models:
            await wait_workers(running, m, 1, timeout_s=900.0, check=procs.check_alive)
        yield running
    finally:
        await asyncio.to_thread(procs.stop_all)
        await broker.stop()
