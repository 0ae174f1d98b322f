"""A fleet of real router processes and one simulated-engine worker (timed token emission, no model), and a raw
Kafka client, for the benchmarks that measure the fleet's policies (tenant limits, priority lanes): the client
sends plain requests to the shared intake and times each reply's first and terminal events by id."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaProducer

from contracts.codec import Codec
from contracts.messages import Chunk, Done, Error, Request
from fleet.kafka import ensure_topics, fleet_topics, make_consumer
from fleet.settings import Settings
from fleet.status import wait_for_workers
from fleet.supervisor import FleetProcesses, toml_value

MODEL = "sim"
MAX_TOKENS = 10


class Client:
    """Sends requests (with a tenant's API key, if given) to the shared intake and reads its reply topic: the
    time of each request's first event and its terminal event."""

    def __init__(self, settings: Settings, key: str | None = None, tenant: str | None = None) -> None:
        self.settings = settings
        self.key = key
        under = f"{settings.kafka.topics.replies}.{tenant}" if tenant else settings.kafka.topics.replies
        self.reply = f"{under}.bench-{uuid.uuid4().hex[:6]}"
        self.codec = Codec()
        self.sent_at: dict[str, float] = {}
        self.terminal: dict[str, tuple[Done | Error, float]] = {}
        self.first: dict[str, float] = {}  # id -> monotonic time of its first event (chunk or terminal)
        self._producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=0)
        self._consumer = make_consumer(settings, group_id=None, auto_offset_reset="earliest")
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Client:
        await ensure_topics(self.settings, {self.reply: 2})
        await self._producer.start()
        await self._consumer.start()
        self._consumer.subscribe([self.reply])
        self._task = asyncio.create_task(self._read())
        ready_by = time.monotonic() + 30
        while not self._consumer.assignment() and time.monotonic() < ready_by:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.02)  # reading before anything is sent: an event's time is when it arrived
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()
        await self._producer.stop()

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=20)
            now = time.monotonic()
            for records in batch.values():
                for r in records:
                    self.on_event(self.codec.decode_reply(r.value), now)

    def on_event(self, ev: Chunk | Done | Error, now: float) -> None:
        """Each reply event as it arrives (monotonic `now`): the first event's time, and the first terminal."""
        self.first.setdefault(ev.id, now)
        if isinstance(ev, Done | Error) and ev.id not in self.terminal:
            self.terminal[ev.id] = (ev, now)

    async def send(
        self, rids: list[str], priority: str = "interactive", topic: str | None = None, max_tokens: int = MAX_TOKENS
    ) -> None:
        futs = []
        for rid in rids:
            req = Request(id=rid, reply_to=self.reply, prompt="hello", max_tokens=max_tokens, model=MODEL)
            value = msgspec.json.encode(req)
            if priority != "interactive":
                value = value[:-1] + b',"priority":"batch"}'
            self.sent_at[rid] = time.monotonic()
            headers = [("content-type", b"application/json")]
            if self.key is not None:
                headers.append(("fleet-api-key", self.key.encode()))
            where = topic or self.settings.kafka.topics.requests
            futs.append(await self._producer.send(where, value, headers=headers))
        await asyncio.gather(*futs)

    async def wait(self, rids: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(r not in self.terminal for r in rids):  # noqa: ASYNC110 - a bounded poll
            await asyncio.sleep(0.05)


SIM: dict[str, object] = {"path": "none", "engine": "simulated", "max_running": 64, "max_inflight": 256}


def write_config(
    path: Path,
    prefix: str,
    models: dict[str, dict[str, object]],
    tiers: list[tuple[str, str, float]],
    *,
    router: tuple[str, ...] = (),
    intake_partitions: int = 4,
    extra: str = "",
) -> Path:
    """A fleet of simulated models (`models`: name -> settings over SIM) for the policy benchmarks: short group
    timeouts, no overload bound a backlog could trip, `router` lines added to [router], `extra` at the end."""
    lines = [
        f"cache_dir = {toml_value(str(path.parent / 'cache'))}",
        "[kafka]",
        f"topic_prefix = {toml_value(prefix)}",
        f"intake_partitions = {intake_partitions}",
        "model_partitions = 2",
        "[latency]",
        "session_timeout_ms = 6000",
        "heartbeat_interval_ms = 500",
        "rebalance_timeout_ms = 3000",
        "status_interval_ms = 300",
        "[router]",
        "overload_max_backlog = 100000",
        *router,
    ]
    for name, model, max_score in tiers:
        lines += ["[[router.tiers]]", f"name = {toml_value(name)}", f"model = {toml_value(model)}"]
        lines.append(f"max_score = {'inf' if max_score == float('inf') else max_score}")
    for name, settings in models.items():
        lines += ["[[models]]", f"name = {toml_value(name)}"]
        lines += [f"{k} = {toml_value(v)}" for k, v in {**SIM, **settings}.items()]
    path.write_text("\n".join([*lines, extra]) + "\n")
    return path


def config(
    path: Path, prefix: str, *, extra: str = "", price: float = 0.0, engine: dict[str, object] | None = None
) -> Path:
    """One simulated model behind one tier; `engine` overrides its settings, `extra` is appended (tenants,
    a [worker] table)."""
    model = {"simulated_tokens_per_s": 2000.0, "price_per_1k_prompt": 0.0, "price_per_1k_completion": price}
    return write_config(
        path,
        prefix,
        {MODEL: {**model, **(engine or {})}},
        [("only", MODEL, float("inf"))],
        router=("tenant_state_interval_ms = 500",),
        extra=extra,
    )


async def start_fleet(
    bootstrap: str,
    work: Path,
    prefix: str,
    routers: int = 1,
    *,
    extra: str = "",
    price: float = 0.0,
    engine: dict[str, object] | None = None,
) -> FleetProcesses:
    cfg = config(work / f"{prefix}.toml", prefix, extra=extra, price=price, engine=engine)
    fleet = FleetProcesses(bootstrap, work / f"logs-{prefix}", cfg)
    await ensure_topics(fleet.settings, fleet_topics(fleet.settings))
    for i in range(routers):
        fleet.start_router(f"router-{i}")
    fleet.start_worker(MODEL)
    seen = await wait_for_workers(fleet.settings, [MODEL], 120)
    if MODEL not in seen:
        raise RuntimeError(f"worker not ready:\n{fleet.log('worker-' + MODEL)[-2000:]}")
    if not await fleet.wait_settled(60):  # the routers' and the worker's groups hold their partitions
        raise RuntimeError(f"groups not settled:\n{fleet.log('router-0')[-2000:]}")
    return fleet


def pct(xs: list[float], q: float, empty: float = float("nan")) -> float:
    """The nearest-rank `q` quantile of `xs` (`empty` when there are none)."""
    if not xs:
        return empty
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]
