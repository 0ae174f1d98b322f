"""Kafka fixtures: a real Tansu broker process, and the fleet's router and
workers as real processes (`python -m fleet.cli ...`) against it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fleet.broker import EmbeddedBroker, free_port
from fleet.kafka import ensure_topics, fleet_topics
from fleet.supervisor import FleetProcesses, toml_value


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """Bootstrap address of a fresh Tansu broker for the test session."""
    b = EmbeddedBroker("127.0.0.1", free_port())
    b.start_process()
    b.wait_ready_sync()
    yield b.bootstrap
    b.stop_sync()


class FleetProcs(FleetProcesses):
    """A test fleet's router and worker processes (the fleet supervisor), as FleetProcs(config, bootstrap, logs);
    kill, restart and stop them at will."""

    def __init__(self, config: Path, bootstrap: str, logs: Path) -> None:
        super().__init__(bootstrap, logs, config)


def write_config(
    path: Path,
    models: list[dict[str, object]],
    extra: str = "",
    prefix: str = "llm",
    tiers: list[tuple[str, str, float]] | None = None,
    partitions: int = 2,
    cache_dir: Path | None = None,
) -> Path:
    lines = [
        f"cache_dir = {toml_value(str(cache_dir or path.parent / 'cache'))}",
        'log_level = "debug"',
        "[kafka]",
        f"topic_prefix = {toml_value(prefix)}",
        f"model_partitions = {partitions}",
        "intake_partitions = 2",
        "[latency]",
        # long-polls of 50 ms, not the default 5 ms: the dev broker answers a fetch when data arrives either
        # way, but an idle fleet's consumers polling every 5 ms cost the broker and each process several
        # times the CPU (a router and two workers: 0.6 of a core idle, 0.2 at 50 ms), which a 2-core machine
        # running the suite on several processes does not have; requests still flow in tens of milliseconds
        "fetch_max_wait_ms = 50",
        "session_timeout_ms = 6000",
        "heartbeat_interval_ms = 500",
        "rebalance_timeout_ms = 3000",
        "status_interval_ms = 300",
        "chunk_interval_ms = 20",
        "chunk_max_tokens = 4",
        extra,
    ]
    for m in models:
        lines.append("[[models]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in m.items()]
    for name, model, max_score in tiers or []:
        lines += [
            "[[router.tiers]]",
            f"name = {toml_value(name)}",
            f"model = {toml_value(model)}",
            f"max_score = {'inf' if max_score == float('inf') else max_score}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def worker_partitions(fleet: FleetProcs, name: str) -> list[object]:
    """The partitions the worker process `name` holds, as its log says (none before it joined, while revoked)."""
    return fleet.held(name)


def groups_settled(fleet: FleetProcs) -> bool:
    """Every running router and worker holds its share of its group's partitions (FleetProcesses.groups_settled)."""
    return fleet.groups_settled()


async def logged(
    fleet: FleetProcs, name: str, event: str, timeout_s: float = 60, **fields: object
) -> dict[str, object]:
    """The first record of `event` (with these `fields`) in the JSON log of the child `name`, waited for."""
    deadline = time.monotonic() + timeout_s
    while True:
        for line in fleet.log(name).splitlines():
            if f'"{event}"' not in line:
                continue
            try:
                rec = json.loads(line[line.index("{") :])
            except ValueError:
                continue
            if rec.get("event") == event and all(rec.get(k) == v for k, v in fields.items()):
                return dict(rec)
        assert time.monotonic() < deadline, f"{name} logged no {event} {fields} in {timeout_s} s"
        await asyncio.sleep(0.1)


async def wait_ready(fleet: FleetProcs, models: list[str], timeout_s: float = 180) -> None:
    """Until every model's worker has reported on the status topic and the consumer groups have settled:
    the router holds its intake partitions and each model's partitions are held by exactly one of its
    workers (`FleetProcesses.groups_settled`)."""
    from fleet.status import wait_for_workers

    async def died() -> None:
        while all(p.poll() is None for p in fleet.procs.values()):  # noqa: ASYNC110 - a bounded poll, not a wait for one event
            await asyncio.sleep(0.2)

    deadline = time.monotonic() + timeout_s
    waiter = asyncio.ensure_future(wait_for_workers(fleet.settings, models, timeout_s))
    watcher = asyncio.ensure_future(died())
    await asyncio.wait([waiter, watcher], return_when=asyncio.FIRST_COMPLETED)
    seen = waiter.result() if waiter.done() else {}
    if not waiter.done():
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
    watcher.cancel()
    missing = set(models) - set(seen)
    settled = not missing and await fleet.wait_settled(max(0.0, deadline - time.monotonic()))
    if missing or not settled:
        logs = "\n".join(f"--- {n}\n{fleet.log(n)[-3000:]}" for n in fleet.procs)
        what = f"workers for {missing} not ready" if missing else "consumer groups not settled"
        raise AssertionError(f"{what}\n{logs}")


@contextlib.asynccontextmanager
async def started(
    config: Path, bootstrap: str, logs: Path, workers: list[tuple[str, str]]
) -> AsyncIterator[FleetProcs]:
    """Topics, a router and the given (model, process name) workers; stopped (SIGTERM) on exit."""
    fleet = FleetProcs(config, bootstrap, logs)
    await ensure_topics(fleet.settings, fleet_topics(fleet.settings))
    fleet.start_router()
    for model, name in workers:
        fleet.start_worker(model, name)
    try:
        await wait_ready(fleet, sorted({m for m, _ in workers}))
        yield fleet
    finally:
        fleet.stop_all()


@pytest.fixture(scope="session")
async def simulated_fleet(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FleetProcs]:
    """Router + one simulated-engine worker per model (timed token emission, no model)."""
    d = tmp_path_factory.mktemp("simfleet")
    cfg = write_config(
        d / "fleet.toml",
        [
            {
                "name": "sim-a",
                "path": "none",
                "engine": "simulated",
                "simulated_tokens_per_s": 200.0,
                "max_inflight": 8,
                "max_running": 4,
            },
            {"name": "sim-b", "path": "none", "engine": "simulated", "simulated_tokens_per_s": 200.0},
        ],
        prefix="sim",
        tiers=[("simple", "sim-a", 0.3), ("complex", "sim-b", float("inf"))],
        extra="[router]\noverload_max_backlog = 20",
    )
    async with started(cfg, broker, d, [("sim-a", "worker-sim-a"), ("sim-b", "worker-sim-b")]) as fleet:
        yield fleet


def elapsed_ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


@pytest.fixture(scope="session")
async def model_fleet(
    broker: str, tmp_path_factory: pytest.TempPathFactory, tiny_pair: object
) -> AsyncIterator[FleetProcs]:
    """Router + workers on real tiny HF checkpoints: `small` (the draft) and `large` (target, drafting with
    small). Model `ghost` is configured but has no worker (requests to it are never answered)."""
    d = tmp_path_factory.mktemp("modelfleet")
    target, draft = str(tiny_pair.target), str(tiny_pair.draft)  # type: ignore[attr-defined]
    cfg = write_config(
        d / "fleet.toml",
        [
            {"name": "small", "path": draft, "max_inflight": 64},
            {"name": "large", "path": target, "draft_path": draft, "max_inflight": 64},
            {"name": "ghost", "path": draft},
        ],
        prefix="e2e",
        # ghost's breaker opens 10 s after the router starts (the default waits minutes for models to load)
        extra="[limits]\nmax_prompt_chars = 2000\nmax_tokens_ceiling = 4000\n[router]\nbreaker_start_grace_ms = 10000",
    )
    async with started(cfg, broker, d, [("small", "worker-small"), ("large", "worker-large")]) as fleet:
        yield fleet
