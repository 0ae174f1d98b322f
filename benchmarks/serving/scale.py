"""Fleet scale with the SIMULATED engine (timed token emission, no model).

Throughput and TTFT against worker processes and model-topic partitions, and
the pause a consumer-group rebalance causes when a worker joins, leaves
(SIGTERM: drain) or crashes (SIGKILL: noticed after `session_timeout_ms`).
These numbers measure the fleet's Kafka plumbing and group behaviour, never a
model; every report and plot says so.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common.datasets import random_requests
from benchmarks.common.metrics import RequestTrace, request_metrics, summarize
from benchmarks.common.procs import Procs, simulated_config, wait_workers
from benchmarks.common.results import collect_meta
from benchmarks.serving.arrivals import ArrivalSpec, arrival_offsets
from benchmarks.serving.schema import RebalancePause, ScalePoint, ScaleReport


@dataclass(frozen=True)
class ScaleConfig:
    workers: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    partitions: list[int] = field(default_factory=lambda: [2, 8])
    request_rate: float = 24.0
    num_prompts: int = 120
    input_len: int = 32
    output_len: int = 32
    tokens_per_s: float = 50.0
    max_running: int = 4
    rebalance: bool = True
    rebalance_rate: float = 6.0
    rebalance_workers: int = 2
    event_every_s: float = 14.0  # a join, a leave and a crash, this far apart
    settle_s: float = 4.0  # after a worker joins, before measuring
    warmups: int = 4
    seed: int = 0
    progress: bool = True
    machine: str | None = None


def first_token_times(traces: list[RequestTrace]) -> list[tuple[float, float]]:
    """(send time, first-token time) of the successful requests."""
    out = []
    for t in traces:
        m = request_metrics(t)
        if m is not None:
            out.append((t.send_s, t.send_s + m.ttft))
    return out


def _longest_gap(start: float, end: float, times: list[float]) -> float:
    """Longest interval in [start, end] with none of `times` in it (closed by the first time after end)."""
    inside = sorted(x for x in times if start < x <= end)
    after = [x for x in sorted(times) if x > end][:1]
    seq = [start, *inside, *(after or [end])]
    return float(max(b - a for a, b in itertools.pairwise(seq)))


def rebalance_pause(
    traces: list[RequestTrace], event_s: float, window_s: float, event: str, before: int, after: int
) -> RebalancePause:
    """What the rebalance at `event_s` did, from the client's traces (perf_counter seconds)."""
    pairs = first_token_times(traces)
    firsts = [f for _, f in pairs]
    ttft_before = [(f - s) * 1000 for s, f in pairs if event_s - window_s <= s < event_s]
    ttft_after = [(f - s) * 1000 for s, f in pairs if event_s <= s < event_s + window_s]
    lost_after = sum(1 for t in traces if not t.success and event_s <= t.send_s < event_s + window_s)
    p50 = float(np.median(ttft_before)) if ttft_before else 0.0
    p99 = float(np.percentile(ttft_before, 99)) if ttft_before else 0.0
    return RebalancePause(
        event=event,
        workers_before=before,
        workers_after=after,
        stall_ms=_longest_gap(event_s, event_s + window_s, firsts) * 1000,
        normal_gap_ms=_longest_gap(event_s - window_s, event_s, firsts) * 1000,
        ttft_p50_before_ms=p50,
        ttft_max_after_ms=max(ttft_after, default=0.0),
        delayed_requests=sum(1 for x in ttft_after if x > 2 * p99) + lost_after,
        window_s=window_s,
    )


async def _measure(
    client: Any,
    model: str,
    cfg: ScaleConfig,
    rate: float,
    n: int,
    burstiness: float = 1.0,
    during: Callable[[float], Any] | None = None,
) -> tuple[list[RequestTrace], float]:
    from benchmarks.serving.serve import drive, fleet_sender, warm_up

    send = fleet_sender(client, model=model, timeout_s=120.0)
    reqs = random_requests(n, input_len=cfg.input_len, output_len=cfg.output_len, seed=cfg.seed)
    await warm_up(
        send,
        random_requests(cfg.warmups, input_len=cfg.input_len, output_len=cfg.output_len, seed=cfg.seed + 1),
        None,
    )
    offsets = arrival_offsets(n, ArrivalSpec(request_rate=rate, burstiness=burstiness), cfg.seed)
    side = asyncio.create_task(during(time.perf_counter())) if during else None
    try:
        return await drive(send, reqs, offsets, progress=cfg.progress, desc=f"{rate:g} req/s")
    finally:
        if side is not None:
            await side


async def run_scale(
    cfg: ScaleConfig,
    *,
    bootstrap: str | None = None,
    say: Callable[[str], Any] = print,
    logs: Path | None = None,
) -> ScaleReport:
    from fleet.broker import EmbeddedBroker, free_port
    from fleet.client import FleetClient
    from fleet.kafka import ensure_topics, fleet_topics

    logs = logs or Path(tempfile.mkdtemp(prefix="fleet-scale-"))
    broker = None
    if bootstrap is None:
        broker = EmbeddedBroker("127.0.0.1", free_port(), log_file=logs / "broker.log")
        await broker.start()
        bootstrap = broker.bootstrap
    points: list[ScalePoint] = []
    pauses: list[RebalancePause] = []
    try:
        runs = [(p, False) for p in cfg.partitions] + ([(max(cfg.partitions), True)] if cfg.rebalance else [])
        for parts, is_rebalance in runs:
            token = uuid.uuid4().hex[:6]
            prefix = f"scale-{token}-p{parts}"
            model = f"sim-{token}"  # its own consumer group (`llm-worker-<model>`) for every run
            conf = simulated_config(
                logs / f"{prefix}.toml",
                prefix=prefix,
                model=model,
                partitions=parts,
                tokens_per_s=cfg.tokens_per_s,
                max_running=cfg.max_running,
            )
            procs = Procs(bootstrap, logs / prefix, conf)
            settings = procs.settings
            await ensure_topics(settings, fleet_topics(settings))
            procs.start("router", "router")
            try:
                async with FleetClient(settings) as client:
                    if is_rebalance:
                        pauses = await _rebalance_run(model, cfg, procs, settings, client, say)
                        continue
                    for n in sorted(cfg.workers):
                        while len(procs.workers()) < n:
                            procs.start_worker(model)
                        await wait_workers(settings, model, n, timeout_s=180.0, check=procs.check_alive)
                        await asyncio.sleep(cfg.settle_s)
                        procs.check_alive()
                        say(f"scale (SIMULATED): {n} workers, {parts} partitions, {cfg.request_rate:g} req/s")
                        traces, dur = await _measure(client, model, cfg, cfg.request_rate, cfg.num_prompts)
                        points.append(ScalePoint(n, parts, cfg.request_rate, summarize(traces, dur)))
            finally:
                await asyncio.to_thread(procs.stop_all)
    finally:
        if broker is not None:
            await broker.stop()
    config = {
        "tokens_per_s": cfg.tokens_per_s,
        "max_running": cfg.max_running,
        "output_len": cfg.output_len,
        "input_len": cfg.input_len,
        "num_prompts": cfg.num_prompts,
        "request_rate": cfg.request_rate,
        "workers": cfg.workers,
        "partitions": cfg.partitions,
        "rebalance_rate": cfg.rebalance_rate,
        "capacity_per_worker_req_s": round(cfg.max_running * cfg.tokens_per_s / cfg.output_len, 2),
    }
    return ScaleReport(
        meta=collect_meta(machine=cfg.machine, simulated=True), config=config, points=points, rebalance=pauses
    )


async def _rebalance_run(
    model: str, cfg: ScaleConfig, procs: Procs, settings: Any, client: Any, say: Callable[[str], Any]
) -> list[RebalancePause]:
    """Steady even arrivals; a worker joins, one leaves (SIGTERM), one crashes (SIGKILL)."""
    base = cfg.rebalance_workers
    for _ in range(base):
        procs.start_worker(model)
    await wait_workers(settings, model, base, timeout_s=180.0, check=procs.check_alive)
    await asyncio.sleep(cfg.settle_s)
    gap = cfg.event_every_s
    events: list[tuple[str, float, int, int]] = []

    async def choreography(t0: float) -> None:
        await asyncio.sleep(t0 + gap - time.perf_counter())
        events.append(("join", time.perf_counter(), base, base + 1))  # from the launch of the process:
        procs.start_worker(model)  # its start-up stalls nothing, the group join it ends with may
        await asyncio.sleep(max(0.0, t0 + 2 * gap - time.perf_counter()))
        events.append(("leave (SIGTERM)", time.perf_counter(), base + 1, base))
        procs.stop(procs.workers()[0])
        await asyncio.sleep(max(0.0, t0 + 3 * gap - time.perf_counter()))
        events.append(("crash (SIGKILL)", time.perf_counter(), base, base - 1))
        procs.stop(procs.workers()[0], kill=True)

    n = int(cfg.rebalance_rate * gap * 4)
    say(f"rebalance (SIMULATED): {base} workers, {n} requests at {cfg.rebalance_rate:g} req/s, even gaps")
    traces, _ = await _measure(client, model, cfg, cfg.rebalance_rate, n, burstiness=math.inf, during=choreography)
    return [rebalance_pause(traces, at, gap * 0.8, name, b, a) for name, at, b, a in events]
