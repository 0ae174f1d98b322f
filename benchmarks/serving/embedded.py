"""`fleet bench run --start-fleet`: an embedded broker, a router and workers for the run."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from benchmarks.common.procs import Procs, wait_workers
from fleet.preparation import prepare_models
from fleet.settings import Settings


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
        # a GGUF is converted once (seconds), the demo pair trained once (minutes); a cancelled run stops the
        # preparation child (fleet.preparation.run_child), so the event is never set
        await prepare_models([settings.model(name) for name in models], settings.cache_path, asyncio.Event())
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
