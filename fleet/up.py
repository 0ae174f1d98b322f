"""`fleet up`: embedded broker, router and one worker per model, a smoke request,
and a live one-line status until Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console

from contracts.messages import WorkerStatus
from fleet.broker import BrokerError, EmbeddedBroker, embedded_broker, journal_dir
from fleet.kafka import connection_kwargs, ensure_topics, fleet_topics, group_progress, make_consumer
from fleet.preparation import PreparationFailed, prepare_models
from fleet.settings import WORKERS_ON_HOST_ENV, BrokerStorage, Settings
from fleet.status import RECENT_REPORTS, StatusReader, wait_for_workers
from fleet.supervisor import FleetProcesses
from router.feeds import feed_health
from router.views import HealthView

log = structlog.get_logger(__name__)
console = Console(stderr=True)


def children(settings: Settings, logs_dir: Path, config: str | None) -> FleetProcesses:
    """The router and workers `fleet up` starts: they read the same config file and know how many
    workers share this host (each takes its share of the CPU threads) unless the environment says."""
    on_host = os.environ.get(WORKERS_ON_HOST_ENV, str(len(settings.models)))
    env = {WORKERS_ON_HOST_ENV: on_host, "FLEET_RECORD_KEY": record_key(settings)}
    return FleetProcesses(settings.kafka.bootstrap, logs_dir, config, env=env)


def metrics_ports(settings: Settings) -> dict[str, dict[str, str]]:
    """With metrics on, each child its own port on this host: the router the configured one, the workers the next
    ones in model order (0 stays 0: each picks a free port and logs it). Child name -> its environment."""
    m = settings.metrics
    if not m.enabled:
        return {}
    names = ["router", *settings.model_names]
    return {n: {"FLEET_METRICS_PORT": str(m.port + i if m.port else 0)} for i, n in enumerate(names)}


def record_key(settings: Settings) -> str:
    """The secret for the records only the fleet may write (fleet/record_mac.py): the configured one
    (FLEET_RECORD_KEY is read into the settings), else one per run; with a journal, one per journal, kept beside
    it: usage and tenant records from before a restart are signed with it and must still verify."""
    k = settings.kafka
    if k.record_key:
        return k.record_key
    if not (k.embedded and k.embedded_storage is BrokerStorage.JOURNAL):
        return secrets.token_hex(32)
    path = journal_dir(settings) / "record_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        kept = path.read_text().strip()
        if len(kept) >= 16:
            return kept
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    os.replace(partial, path)
    return key


class StatusLine:
    """requests/s at intake, in flight per worker status; per model: lag, live workers, and its breaker with the
    failures among the outcomes in its window (a HealthView fed as the router feeds its own: router/feeds.py)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.status = StatusReader(settings, from_start=False, recent=RECENT_REPORTS)
        self.health = HealthView(settings, int(time.time() * 1000))
        self._last_intake: tuple[float, int] | None = None

    async def run(self, stop: asyncio.Event, until: float | None) -> None:
        s = self.settings
        ends = make_consumer(s, group_id=None)
        admin = AIOKafkaAdminClient(**connection_kwargs(s))
        await self.status.start()
        await ends.start()
        await admin.start()
        done = asyncio.Event()
        health = asyncio.create_task(feed_health(s, self.health, done), name="health")
        try:
            while not stop.is_set() and (until is None or time.monotonic() < until):
                await self.status.poll(timeout_ms=1000)
                console.print(await self.line(ends, admin), end="\r", soft_wrap=True, highlight=False)
        finally:
            done.set()
            await asyncio.gather(health, return_exceptions=True)
            console.print()
            await self.status.stop()
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
        fresh = self.status.fresh(5000)
        in_flight = sum(st.running + st.waiting for st in fresh)
        lags = []
        health = self.health.summary(int(time.time() * 1000))
        for m in s.models:
            progress = await group_progress(
                ends, admin, t.model(m.name), range(s.kafka.model_partitions), t.worker_group(m.name)
            )
            lag = sum(max(0, end - committed) for end, committed in progress)
            lags.append(f"{m.name} lag {lag} {health[m.name]}")  # e.g. "large lag 3 open 0w 0/0"
        return (
            f"[bold]fleet[/] {rate:6.1f} req/s | in flight {in_flight:3d} | workers {len(fresh)} | "
            f"{' | '.join(lags)}   "
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if not await prepare_models(settings.models, settings.cache_path, stop, say=_say_models):
            console.print("[yellow]stopped[/] while preparing models; nothing half-written is left")
            return 130
    except (PreparationFailed, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]models[/] {exc}")
        return 1
    broker: EmbeddedBroker | None = None
    watch: asyncio.Task[None] | None = None
    if k.embedded:
        broker = embedded_broker(settings, log_file=logs_dir / "broker.log")
        try:
            await broker.start()
        except BrokerError as exc:
            console.print(f"[red]broker[/] {exc}")
            return 1
        replayed = f", {broker.last_replayed} records filled back" if broker.last_replayed else ""
        console.print(f"[green]broker[/] Tansu (embedded, {broker.storage}{replayed}) on {k.bootstrap}")
        # a broker that dies is started again (on a journal: filled back first); the fleet reconnects by itself
        watch = asyncio.create_task(broker.watch(on_restart=_say_broker), name="broker-watch")
    else:
        console.print(f"[green]broker[/] using {k.bootstrap} ({k.security_protocol.value})")
    procs: FleetProcesses | None = None
    try:
        procs = children(settings, logs_dir, config)  # after the broker: its journal keeps the record key
        created = await ensure_topics(settings, fleet_topics(settings))
        console.print(f"[green]topics[/] {len(created)} created, prefix '{k.topic_prefix}'")
        ports = metrics_ports(settings)
        procs.start_router(env=ports.get("router"))
        for m in settings.models:
            procs.start_worker(m.name, env=ports.get(m.name))
        console.print(f"[green]processes[/] router + {len(settings.models)} workers; logs in {logs_dir}")
        if ports:
            where = ", ".join(f"{n} :{e['FLEET_METRICS_PORT']}" for n, e in ports.items())
            console.print(f"[green]metrics[/] /metrics, /livez, /readyz on {where}")
        # reports heard lately only: a journaled broker keeps the last run's, and a worker that reported hours ago
        # is not ready now (a smoke request sent on those waited 20 s for workers still loading); then the groups
        # joined and the router has heard the workers, so the first request waits for no join
        fresh_ms = 3 * settings.latency.status_interval_ms + 1000

        async def ready() -> tuple[dict[str, WorkerStatus], bool]:
            seen = await wait_for_workers(settings, settings.model_names, worker_timeout_s, within_ms=fresh_ms)
            return seen, set(seen) == set(settings.model_names) and await procs.wait_settled(worker_timeout_s)

        which, result = await first(ready(), stop.wait(), procs.died())
        if which == 1:
            return 130
        if which == 2:
            console.print(f"[red]{result} exited during start-up; see {logs_dir / (result + '.log')}[/]")
            return 1
        reports, settled = result
        missing = set(settings.model_names) - set(reports)
        if missing:
            console.print(
                f"[red]workers for {sorted(missing)} did not report within {worker_timeout_s:.0f}s; see {logs_dir}[/]"
            )
            return 1
        for st in reports.values():
            console.print(
                f"[green]worker[/] {st.model}: weights {st.weights_bytes / 2**20:.1f} MiB, "
                f"KV cache up to {st.kv_budget_bytes / 2**20:.1f} MiB ({st.kv_cache_bytes / 2**20:.1f} now), "
                f"capacity {st.capacity}"
            )
        if not settled:
            console.print(f"[yellow]consumer groups not settled within {worker_timeout_s:.0f}s: requests may wait[/]")
        if smoke:
            await smoke_request(settings)
        print_howto(settings)
        until = time.monotonic() + for_seconds if for_seconds else None
        await StatusLine(settings).run(stop, until)
        return 0
    finally:
        console.print("[yellow]stopping[/]: draining workers, then the broker")
        if procs is not None:
            await asyncio.to_thread(procs.stop_all)
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        if broker is not None:
            await broker.stop()


def _say_broker(message: str) -> None:
    console.print(f"\n[yellow]broker[/] {message}")


def _say_models(message: str) -> None:
    console.print(f"[green]models[/] {message}")


async def smoke_request(settings: Settings) -> None:
    """One request through the whole fleet, streamed to the terminal: the proof that it works."""
    from contracts.messages import Chunk, Done
    from fleet.client import FleetClient

    question = "What is the capital of France?"
    console.print(f"[green]smoke[/] model=auto, chat: {question!r}")
    async with FleetClient(settings) as client:
        t0 = time.perf_counter()
        first: float | None = None
        async for ev in client.stream(messages=[{"role": "user", "content": question}], max_tokens=48):
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
  fleet generate "Write a Python function that reverses a string."   # a chat turn; 'auto' picks the model
  fleet generate --model large --raw "def fibonacci(n):"              # a raw completion, no chat template
  python: async with fleet.client.FleetClient() as c: print((await c.generate(messages=[...])).text)
  any Kafka client: produce JSON to [cyan]{t.requests}[/] on {b} with header content-type: application/json
    {{"id": "req-1", "reply_to": "my.replies", "messages": [{{"role": "user", "content": "Hi"}}], "max_tokens": 32}}
  and read events keyed by the id from [cyan]my.replies[/] ({{"type": "chunk"...}}, then "done" or "error").
Ctrl-C stops everything cleanly.
""",
        highlight=False,
    )
