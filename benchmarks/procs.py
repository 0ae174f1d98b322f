"""Fleet processes for benchmarks: an embedded broker, a router and N workers, as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fleet.runtime import spawn_cli
from fleet.settings import Settings, load_settings


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


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
        f"cache_dir = {_toml(str(path.parent / 'cache'))}",
        "[kafka]",
        f"topic_prefix = {_toml(prefix)}",
        f"model_partitions = {partitions}",
        f"intake_partitions = {partitions}",
        f"reply_partitions = {partitions}",
        "[latency]",
        *[f"{k} = {_toml(v)}" for k, v in (latency or {}).items()],
        "[[router.tiers]]",
        'name = "all"',
        f"model = {_toml(model)}",
        "max_score = inf",
        "[[models]]",
        f"name = {_toml(model)}",
        'path = "none"',
        'engine = "simulated"',
        f"simulated_tokens_per_s = {tokens_per_s}",
        f"max_running = {max_running}",
        f"max_inflight = {max_inflight}",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Procs:
    """Router and worker processes started with `python -m fleet.cli`; stopped with SIGTERM (drain)."""

    bootstrap: str
    logs: Path
    config: Path | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        env = {"FLEET_KAFKA_BOOTSTRAP": self.bootstrap}
        if self.config is None and os.environ.get("FLEET_CONFIG"):
            env["FLEET_CONFIG"] = os.environ["FLEET_CONFIG"]
        return load_settings(self.config, env=env)

    def start(self, name: str, *args: str) -> None:
        env = dict(os.environ, FLEET_KAFKA_BOOTSTRAP=self.bootstrap, FLEET_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
        env["FLEET_LOG_LEVEL"] = "warning"
        if self.config is not None:
            env["FLEET_CONFIG"] = str(self.config)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs[name] = spawn_cli(list(args), env=env, log_file=self.logs / f"{name}.log")

    def start_worker(self, model: str) -> str:
        name = f"worker-{model}-{sum(1 for n in self.procs if n.startswith(f'worker-{model}-'))}"
        self.start(name, "worker", "--model", model)
        return name

    def workers(self) -> list[str]:
        return [n for n, p in self.procs.items() if n.startswith("worker-") and p.poll() is None]

    def stop(self, name: str, *, kill: bool = False) -> None:
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGKILL if kill else signal.SIGTERM)

    def stop_all(self, grace_s: float = 40.0) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None and p.returncode not in (0, -signal.SIGKILL, -signal.SIGTERM):
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{tail}")


async def wait_workers(
    settings: Settings, model: str, n: int, timeout_s: float = 120.0, check: Callable[[], None] | None = None
) -> None:
    """Until `n` distinct workers of `model` report on the status topic (fresh reports only);
    `check` is called between polls (to fail fast when a process died)."""
    import asyncio

    from contracts.codec import Codec, DecodeFailure
    from fleet.kafka import make_consumer

    codec = Codec()
    seen: dict[str, int] = {}
    consumer = make_consumer(settings, settings.kafka.topics.status, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now_ms = time.time() * 1000
            if sum(1 for ts in seen.values() if now_ms - ts < 3000) >= n:
                return
            if check is not None:
                check()
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    try:
                        st = codec.decode_status(r.value or b"")
                    except DecodeFailure:
                        continue
                    if st.model == model:
                        seen[st.worker_id] = st.ts_ms
            await asyncio.sleep(0)
        raise TimeoutError(f"{n} workers of {model} did not report within {timeout_s:.0f}s")
    finally:
        await consumer.stop()
