"""Fallback when a model dies, measured on real processes: one broker, a `fleet router`, simulated-engine workers
(timed token emission, no model: the router's rerouting is what is measured) of two models, `large` (two
workers, `router.fallback = {large = ["small"]}`) and `small` (one worker), and a raw client.

The client sends a steady stream, three of four requests asking for `large` and one for `small`, each with a
deadline. Mid-run every `large` worker is SIGKILLed; the router's breaker for `large` opens (no live worker);
requests asking for `large` are then served by `small`, their `done` naming both. Later the `large` workers are
started again; the breaker goes half-open, a probe succeeds, it closes and `large` serves its traffic again.

Reported: kill -> breaker open and restart -> breaker closed (from the router's log), the E2E latency of
requests rerouted after the breaker opened against requests that asked for `small` in the same period (the
added latency is the difference of their p95s; the goal is at most 250 ms), every request's terminal events
(exactly one each, none lost), those past their deadline, and who served what in each phase. Requests that
were sent to `large` between the kill and the breaker opening wait in its topic until it returns (served then,
or answered `expired`): the router does not move a dead model's backlog.

Run `python -m benchmarks.policies.resilience [--rate 40] [--seconds 30]`; results go to
benchmarks/results/resilience_<machine>_<date>_<commit>.json. tests/test_resilience.py runs it small as the
chaos test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import msgspec

from benchmarks.common.results import collect_meta, result_path
from benchmarks.policies import policy_fleet
from contracts.messages import Chunk, Done, Error, Request
from fleet.broker import EmbeddedBroker, free_port
from fleet.kafka import ensure_topics, fleet_topics
from fleet.settings import Settings
from fleet.status import wait_for_workers
from fleet.supervisor import FleetProcesses

LARGE_WORKERS = ("worker-large-a", "worker-large-b")


def config(path: Path, prefix: str) -> Path:
    sim: dict[str, object] = {"simulated_tokens_per_s": 400.0}
    router = ("breaker_no_worker_ms = 1000", "breaker_cooldown_ms = 2000", 'fallback = { large = ["small"] }')
    tiers = [("simple", "small", 0.5), ("complex", "large", float("inf"))]
    models = {"small": sim, "large": sim}
    return policy_fleet.write_config(path, prefix, models, tiers, router=router, intake_partitions=2)


class Client(policy_fleet.Client):
    """Also records every terminal event of each request, duplicates included, with its epoch time."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.sent: dict[str, tuple[str, float, int]] = {}  # id -> (model asked, monotonic sent, deadline epoch ms)
        self.terminals: dict[str, list[tuple[Done | Error, float, int]]] = {}  # id -> (event, monotonic, epoch ms)

    def on_event(self, ev: Chunk | Done | Error, now: float) -> None:
        super().on_event(ev, now)
        if isinstance(ev, Done | Error):
            self.terminals.setdefault(ev.id, []).append((ev, now, int(time.time() * 1000)))

    async def send_one(self, rid: str, model: str, timeout_ms: int, max_tokens: int) -> None:
        deadline = int(time.time() * 1000) + timeout_ms
        req = Request(id=rid, reply_to=self.reply, prompt="hello", max_tokens=max_tokens, model=model,
                      deadline_ms=deadline)  # fmt: skip
        self.sent[rid] = (model, time.monotonic(), deadline)
        await self._producer.send(self.settings.kafka.topics.requests, msgspec.json.encode(req))

    def done(self) -> bool:
        return all(r in self.terminals for r in self.sent)


@dataclass(slots=True)
class ResilienceResult:
    rate_per_s: float
    sent: int = 0
    with_one_terminal: int = 0
    lost: int = 0  # no terminal event
    duplicated: int = 0  # more than one terminal event (in flight on a killed worker, redone: the client drops it)
    past_deadline: int = 0  # terminal event later than the request's deadline
    kill_to_open_ms: float = 0.0
    restart_to_close_ms: float = 0.0
    close_to_large_serving_ms: float = 0.0  # breaker closed -> first request asking `large` served by `large`
    rerouted: int = 0  # done from small for requests asking large
    rerouted_after_open: int = 0  # of them, sent after the breaker opened (and before the restart)
    rerouted_p50_ms: float = 0.0
    rerouted_p95_ms: float = 0.0
    direct_small_p50_ms: float = 0.0  # asked small, sent in the same period
    direct_small_p95_ms: float = 0.0
    added_p95_ms: float = 0.0  # rerouted p95 - direct small p95
    steady_large_p95_ms: float = 0.0  # asked large, served by large, before the kill
    killed_window_p95_ms: float = 0.0  # asked large between the kill and the breaker opening: waited for its return
    degraded: int = 0
    served_by: dict[str, dict[str, int]] = field(default_factory=dict)  # phase -> "asked->served" -> count
    errors: dict[str, int] = field(default_factory=dict)
    transitions: list[str] = field(default_factory=list)


def pct(xs: list[float], q: float) -> float:
    return policy_fleet.pct(xs, q, empty=0.0)


def breaker_events(fleet: FleetProcesses) -> list[tuple[float, dict[str, str]]]:
    out = []
    for line in fleet.log("router").splitlines():
        if '"router.breaker"' in line:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            out.append((time.monotonic(), e))
    return out


async def wait_for_breaker(fleet: FleetProcesses, model: str, new: str, after: int, timeout_s: float) -> int:
    """Until the router logs `model`'s breaker going to `new` (beyond the first `after` breaker lines); returns
    how many breaker lines there are then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = breaker_events(fleet)
        if any(e.get("model") == model and e.get("new") == new for _, e in events[after:]):
            return len(events)
        await asyncio.sleep(0.02)
    raise RuntimeError(f"the breaker of {model} did not go {new} in {timeout_s} s:\n{fleet.log('router')[-3000:]}")


async def run(
    bootstrap: str, work: Path, *, rate: float = 40.0, seconds: float = 30.0, timeout_ms: int = 20_000
) -> ResilienceResult:
    """Phases of `seconds` / 3 each: steady; after killing every `large` worker; after restarting them."""
    prefix = f"resil{uuid.uuid4().hex[:6]}"
    cfg = config(work / f"{prefix}.toml", prefix)
    fleet = FleetProcesses(bootstrap, work / f"logs-{prefix}", cfg)
    await ensure_topics(fleet.settings, fleet_topics(fleet.settings))
    fleet.start_router()
    fleet.start_worker("small", "worker-small")
    for name in LARGE_WORKERS:
        fleet.start_worker("large", name)
    result = ResilienceResult(rate_per_s=rate)
    phase_of: dict[str, str] = {}
    try:
        seen = await wait_for_workers(fleet.settings, ["small", "large"], 120, count=1)
        if set(seen) != {"small", "large"}:
            raise RuntimeError(f"workers not ready:\n{fleet.log('router')[-2000:]}")
        if not await fleet.wait_settled(60):  # every worker joined, every group holds its partitions
            raise RuntimeError(f"groups not settled:\n{fleet.log('router')[-2000:]}")
        async with Client(fleet.settings) as client:
            k = 0
            phase = "steady"
            stop_sending = asyncio.Event()

            async def sender() -> None:
                nonlocal k
                t0 = time.monotonic()
                while not stop_sending.is_set():
                    rid = f"r-{k}"
                    phase_of[rid] = phase
                    await client.send_one(rid, "small" if k % 4 == 3 else "large", timeout_ms, 8)
                    k += 1
                    await asyncio.sleep(max(0.0, t0 + k / rate - time.monotonic()))

            task = asyncio.create_task(sender())
            third = seconds / 3
            await asyncio.sleep(third)
            n_lines = len(breaker_events(fleet))
            phase = "killed"
            t_kill = time.monotonic()
            for name in LARGE_WORKERS:
                fleet.stop(name, kill=True)
            for name in LARGE_WORKERS:
                fleet.wait(name, 10)  # reaped before a new process takes its name
            n_lines = await wait_for_breaker(fleet, "large", "open", n_lines, 30)
            t_open = time.monotonic()
            result.kill_to_open_ms = round((t_open - t_kill) * 1000, 1)
            phase = "open"
            await asyncio.sleep(third)
            phase = "restarted"
            t_restart = time.monotonic()
            for name in LARGE_WORKERS:
                fleet.start_worker("large", name)
            await wait_for_breaker(fleet, "large", "closed", n_lines, 120)
            t_closed = time.monotonic()
            result.restart_to_close_ms = round((t_closed - t_restart) * 1000, 1)
            phase = "closed"
            await asyncio.sleep(third)
            stop_sending.set()
            await task
            deadline = time.monotonic() + timeout_ms / 1000 + 30
            while time.monotonic() < deadline and not client.done():  # noqa: ASYNC110 - a bounded poll
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # a late duplicate would show here

        result.sent = len(client.sent)
        rerouted_ms: list[float] = []
        direct_ms: list[float] = []
        steady_ms: list[float] = []
        killed_ms: list[float] = []
        large_back: float | None = None
        for rid, (asked, sent_at, deadline_ms) in client.sent.items():
            terms = client.terminals.get(rid, [])
            if not terms:
                result.lost += 1
                continue
            result.with_one_terminal += len(terms) == 1
            result.duplicated += len(terms) > 1
            ev, at, epoch_ms = terms[0]
            result.past_deadline += epoch_ms > deadline_ms
            p = phase_of[rid]
            if isinstance(ev, Error):
                result.errors[f"{p}:{ev.code.value}"] = result.errors.get(f"{p}:{ev.code.value}", 0) + 1
                continue
            served = "static" if ev.degraded else ev.model
            result.degraded += ev.degraded
            bucket = result.served_by.setdefault(p, {})
            bucket[f"{asked}->{served}"] = bucket.get(f"{asked}->{served}", 0) + 1
            e2e = (at - sent_at) * 1000
            if ev.requested_model == "large" and ev.model == "small":
                result.rerouted += 1
            if p == "open" and sent_at >= t_open:
                if ev.requested_model == "large" and ev.model == "small":
                    rerouted_ms.append(e2e)
                elif asked == "small":
                    direct_ms.append(e2e)
            if asked == "large" and p == "steady":
                steady_ms.append(e2e)
            if asked == "large" and p == "killed":
                killed_ms.append(e2e)
            if asked == "large" and ev.model == "large" and sent_at >= t_closed:
                large_back = sent_at if large_back is None else min(large_back, sent_at)
        result.rerouted_after_open = len(rerouted_ms)
        result.rerouted_p50_ms, result.rerouted_p95_ms = (
            round(pct(rerouted_ms, 0.5), 1),
            round(pct(rerouted_ms, 0.95), 1),
        )
        result.direct_small_p50_ms = round(pct(direct_ms, 0.5), 1)
        result.direct_small_p95_ms = round(pct(direct_ms, 0.95), 1)
        result.added_p95_ms = round(result.rerouted_p95_ms - result.direct_small_p95_ms, 1)
        result.steady_large_p95_ms = round(pct(steady_ms, 0.95), 1)
        result.killed_window_p95_ms = round(pct(killed_ms, 0.95), 1)
        if large_back is not None:
            result.close_to_large_serving_ms = round((large_back - t_closed) * 1000, 1)
        result.transitions = [
            f"{e['model']}: {e['old']} -> {e['new']} ({e['reason']})" for _, e in breaker_events(fleet)
        ]
        return result
    finally:
        fleet.stop_all()


def write(result: ResilienceResult) -> Path:
    meta = collect_meta(simulated=True)  # simulated-engine workers: the router's rerouting is what is measured
    path = result_path("resilience", meta, "json")
    path.write_text(json.dumps({"meta": asdict(meta), "result": asdict(result)}, indent=2) + "\n")
    return path


async def main_async(args: argparse.Namespace) -> ResilienceResult:
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    try:
        with tempfile.TemporaryDirectory() as d:
            return await run(broker.bootstrap, Path(d), rate=args.rate, seconds=args.seconds)
    finally:
        broker.stop_sync()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=40.0, help="requests per second")
    p.add_argument("--seconds", type=float, default=30.0, help="run length (three phases)")
    args = p.parse_args()
    result = asyncio.run(main_async(args))
    print(json.dumps(asdict(result), indent=2))
    print(write(result))


if __name__ == "__main__":
    main()
