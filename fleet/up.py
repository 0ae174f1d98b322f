"""`fleet up`: embedded broker, router and one worker per model, a smoke request,
and a live one-line status until Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console

from contracts.codec import Codec, DecodeFailure
from contracts.messages import WorkerStatus
from fleet.broker import EmbeddedBroker
from fleet.kafka import connection_kwargs, ensure_topics, fleet_topics, group_progress, make_consumer
from fleet.runtime import spawn_cli
from fleet.settings import WORKERS_ON_HOST_ENV, EngineKind, Settings

log = structlog.get_logger(__name__)
console = Console(stderr=True)


@dataclass
class Fleet:
    settings: Settings
    bootstrap: str
    logs_dir: Path
    config: str | None = None  # the TOML file the children must read too
    broker: EmbeddedBroker | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def workers_on_host(self) -> int:
        return len(self.settings.models)

    def spawn(self, name: str, *args: str) -> None:
        env = dict(os.environ, FLEET_KAFKA_BOOTSTRAP=self.bootstrap, FLEET_LOG_FORMAT="json")
        env.setdefault(WORKERS_ON_HOST_ENV, str(self.workers_on_host))
        if self.config:
            env["FLEET_CONFIG"] = self.config
        self.procs[name] = spawn_cli(list(args), env=env, log_file=self.logs_dir / f"{name}.log")

    async def died(self) -> str:
        """The name of the first child process that exits."""
        while True:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    return name
            await asyncio.sleep(0.2)

    def stop_children(self, grace_s: float = 40.0) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for name, p in self.procs.items():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("up.kill", process=name)
                p.kill()
                p.wait()


async def wait_for_workers(settings: Settings, models: list[str], timeout_s: float) -> dict[str, WorkerStatus]:
    """Read llm.fleet.status until every model has reported at least once."""
    codec = Codec()
    seen: dict[str, WorkerStatus] = {}
    consumer = make_consumer(settings, settings.kafka.topics.status, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while set(models) - set(seen) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    try:
                        st = codec.decode_status(r.value or b"")
                    except DecodeFailure:
                        continue
                    seen[st.model] = st
    finally:
        await consumer.stop()
    return seen


class StatusLine:
    """requests/s at intake, in flight per worker status, lag per model topic."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codec = Codec()
        self.latest: dict[str, WorkerStatus] = {}
        self._last_intake: tuple[float, int] | None = None

    async def run(self, stop: asyncio.Event, until: float | None) -> None:
        s = self.settings
        t = s.kafka.topics
        status = make_consumer(s, t.status, group_id=None)
        ends = make_consumer(s, group_id=None)
        admin = AIOKafkaAdminClient(**connection_kwargs(s))
        await status.start()
        await ends.start()
        await admin.start()
        try:
            while not stop.is_set() and (until is None or time.monotonic() < until):
                batch = await status.getmany(timeout_ms=1000)
                for records in batch.values():
                    for r in records:
                        try:
                            st = self.codec.decode_status(r.value or b"")
                            self.latest[st.worker_id] = st
                        except DecodeFailure:
                            pass
                console.print(await self.line(ends, admin), end="\r", soft_wrap=True, highlight=False)
        finally:
            console.print()
            await status.stop()
            await ends.stop()
            await admin.close()

    async def line(self, ends: object, admin: AIOKafkaAdminClient) -> str:
        from aiokafka import AIOKafkaConsumer

        assert isinstance(ends, AIOKafkaConsumer)
        s = self.settings
        t = s.kafka.topics
        intake = [TopicPartition(t.requests, p) for p in range(s.kafka.intake_partitions)]
        total = sum((await ends.end_offsets(intake)).values())
        now = time.monotonic()
        rate = 0.0
        if self._last_intake:
            rate = (total - self._last_intake[1]) / max(1e-6, now - self._last_intake[0])
        self._last_intake = (now, total)
        fresh = [st for st in self.latest.values() if time.time() * 1000 - st.ts_ms < 5000]
        in_flight = sum(st.running + st.waiting for st in fresh)
        lags = []
        for m in s.models:
            progress = await group_progress(
                ends, admin, t.model(m.name), range(s.kafka.model_partitions), t.worker_group(m.name)
            )
            lag = sum(max(0, end - committed) for end, committed in progress)
            lags.append(f"{m.name}={lag}")
        return (
            f"[bold]fleet[/] {rate:6.1f} req/s | in flight {in_flight:3d} | workers {len(fresh)} | "
            f"lag {' '.join(lags)}   "
        )


async def first(*aws: Any) -> tuple[int, Any]:
    """Run awaitables until the first finishes; cancel the rest. Returns (index, result)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        winner = next(t for t in tasks if t in done)
        return tasks.index(winner), winner.result()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def up(
    settings: Settings,
    *,
    smoke: bool,
    for_seconds: float | None,
    config: str | None = None,
    worker_timeout_s: float = 600,
) -> int:
    logs_dir = settings.cache_path / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    k = settings.kafka
    fleet = Fleet(settings, k.bootstrap, logs_dir, config=config)
    if k.embedded:
        fleet.broker = EmbeddedBroker(k.embedded_host, k.embedded_port, log_file=logs_dir / "broker.log")
        await fleet.broker.start()
        console.print(f"[green]broker[/] Tansu (embedded, memory-only) on {k.bootstrap}")
    else:
        console.print(f"[green]broker[/] using {k.bootstrap} ({k.security_protocol.value})")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        created = await ensure_topics(settings, fleet_topics(settings))
        console.print(f"[green]topics[/] {len(created)} created, prefix '{k.topic_prefix}'")
        if any(m.engine is EngineKind.CONTINUOUS and "demo:" in (m.path + str(m.draft_path)) for m in settings.models):
            from fleet.demo_models import ensure_demo_models

            console.print("[green]models[/] checking the demo models (built once: about 5 minutes on 2 cores)")
            await asyncio.to_thread(ensure_demo_models, settings.cache_path, progress=True)
        fleet.spawn("router", "router")
        for m in settings.models:
            fleet.spawn(f"worker-{m.name}", "worker", "--model", m.name)
        console.print(f"[green]processes[/] router + {len(settings.models)} workers; logs in {logs_dir}")
        which, result = await first(
            wait_for_workers(settings, settings.model_names, worker_timeout_s), stop.wait(), fleet.died()
        )
        if which == 1:
            return 130
        if which == 2:
            console.print(f"[red]{result} exited during start-up; see {logs_dir / (result + '.log')}[/]")
            return 1
        ready = result
        missing = set(settings.model_names) - set(ready)
        if missing:
            console.print(
                f"[red]workers for {sorted(missing)} did not report within {worker_timeout_s:.0f}s; see {logs_dir}[/]"
            )
            return 1
        for st in ready.values():
            console.print(
                f"[green]worker[/] {st.model}: weights {st.weights_bytes / 2**20:.1f} MiB, "
                f"KV cache up to {st.kv_budget_bytes / 2**20:.1f} MiB ({st.kv_cache_bytes / 2**20:.1f} now), "
                f"capacity {st.capacity}"
            )
        if smoke:
            await smoke_request(settings)
        print_howto(settings)
        until = time.monotonic() + for_seconds if for_seconds else None
        await StatusLine(settings).run(stop, until)
        return 0
    finally:
        console.print("[yellow]stopping[/]: draining workers, then the broker")
        await asyncio.to_thread(fleet.stop_children)
        if fleet.broker:
            await fleet.broker.stop()


async def smoke_request(settings: Settings) -> None:
    """One request through the whole fleet, streamed to the terminal: the proof that it works."""
    from contracts.messages import Chunk, Done
    from fleet.client import FleetClient

    prompt = "def fibonacci(n):"
    console.print(f"[green]smoke[/] model=auto prompt={prompt!r}")
    async with FleetClient(settings) as client:
        t0 = time.perf_counter()
        first: float | None = None
        async for ev in client.stream(prompt, max_tokens=48):
            if isinstance(ev, Chunk):
                first = first or time.perf_counter()
                sys.stdout.write(ev.text)
                sys.stdout.flush()
            elif isinstance(ev, Done):
                total_ms = (time.perf_counter() - t0) * 1000
                ttft_ms = ((first or t0) - t0) * 1000
                sys.stdout.write("\n")
                console.print(
                    f"[green]done[/] model={ev.model} finish={ev.finish_reason.value} "
                    f"tokens={ev.usage.completion_tokens} client TTFT {ttft_ms:.1f} ms, total {total_ms:.0f} ms"
                )


def print_howto(settings: Settings) -> None:
    b = settings.kafka.bootstrap
    t = settings.kafka.topics
    console.print(
        f"""
[bold]Send requests[/]
  fleet generate "def quicksort(xs):"                  # streams a reply ('auto' picks the model)
  fleet generate --model large "import os"
  python: async with fleet.client.FleetClient() as c: print((await c.generate("hi")).text)
  any Kafka client: produce JSON to [cyan]{t.requests}[/] on {b} with header content-type: application/json
    {{"id": "req-1", "reply_to": "my.replies", "prompt": "def add(a, b):", "max_tokens": 32}}
  and read events keyed by the id from [cyan]my.replies[/] ({{"type": "chunk"...}}, then "done" or "error").
Ctrl-C stops everything cleanly.
""",
        highlight=False,
    )
