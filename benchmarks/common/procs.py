"""Fleet processes for benchmarks: a router and N workers as real processes (through fleet.supervisor)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fleet.settings import Settings
from fleet.status import wait_for_workers
from fleet.supervisor import FleetProcesses, toml_value


def simulated_config(
    path: Path,
    *,
    prefix: str,
    partitions: int,
    model: str = "sim",
    tokens_per_s: float = 50.0,
    max_running: int = 8,
    max_inflight: int = 64,
    latency: dict[str, object] | None = None,
) -> Path:
    """A TOML config with one simulated-engine model (timed token emission, no model)."""
    lines = [
        f"cache_dir = {toml_value(str(path.parent / 'cache'))}",
        "[kafka]",
        f"topic_prefix = {toml_value(prefix)}",
        f"model_partitions = {partitions}",
        f"intake_partitions = {partitions}",
        f"reply_partitions = {partitions}",
        "[latency]",
        *[f"{k} = {toml_value(v)}" for k, v in (latency or {}).items()],
        "[[router.tiers]]",
        'name = "all"',
        f"model = {toml_value(model)}",
        "max_score = inf",
        "[[models]]",
        f"name = {toml_value(model)}",
        'path = "none"',
        'engine = "simulated"',
        f"simulated_tokens_per_s = {tokens_per_s}",
        f"max_running = {max_running}",
        f"max_inflight = {max_inflight}",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


class Procs(FleetProcesses):
    """The benchmark's router and workers: the fleet supervisor, children logging at warning level only
    (a benchmark's logs must not cost it time)."""

    def __init__(self, bootstrap: str, logs: Path, config: Path | None = None) -> None:
        super().__init__(bootstrap, logs, config, env={"FLEET_LOG_LEVEL": "warning"})


async def wait_workers(
    settings: Settings, model: str, n: int, timeout_s: float = 120.0, check: Callable[[], None] | None = None
) -> None:
    """Until `n` distinct workers of `model` report on the status topic (reports of the last 3 s only);
    `check` is called between polls (to fail fast when a process died)."""
    seen = await wait_for_workers(settings, [model], timeout_s, count=n, within_ms=3000, check=check)
    if model not in seen:
        raise TimeoutError(f"{n} workers of {model} did not report within {timeout_s:.0f}s")
