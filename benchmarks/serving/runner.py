"""`fleet bench run`: the fleet through Kafka, with the raw Kafka floor and the same
engine in process measured in the same run, on the same prompts and schedule."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common.datasets import BenchRequest, load_jsonl, random_requests
from benchmarks.common.metrics import RequestTrace, ServingMetrics, summarize
from benchmarks.common.results import collect_meta
from benchmarks.serving.arrivals import ArrivalSpec, RampUp, arrival_offsets
from benchmarks.serving.schema import ServingPoint, ServingReport, overhead, samples
from benchmarks.serving.serve import SendOne, drive, fleet_sender, warm_up
from fleet.settings import EngineKind, Settings


@dataclass(frozen=True)
class ServeConfig:
    model: str = "small"
    num_prompts: int = 200
    warmups: int = 10
    dataset: str = "random"  # "random" or a JSONL path
    input_len: int = 64
    output_len: int = 32
    range_ratio: float = 0.0
    seed: int = 0
    rates: list[float] = field(default_factory=lambda: [4.0])  # inf: no pacing
    burstiness: float = 1.0
    ramp_up: RampUp | None = None
    max_concurrency: int | None = None
    slos_ms: dict[str, float] = field(default_factory=dict)
    floor: bool = True
    inprocess: bool = True
    timeout_s: float = 120.0
    progress: bool = True
    machine: str | None = None
    accelerator: str | None = None
    headline_rate: float | None = None  # the "moderate load" point; default: the middle rate


class HFTokenizer:
    """The worker's tokenizer seen as `encode`/`decode` (for sizing random prompts)."""

    def __init__(self, tok: Any) -> None:
        self._tok = tok

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self._tok(text)["input_ids"]]

    def decode(self, ids: list[int]) -> str:
        text: str = self._tok.decode(ids, skip_special_tokens=True)
        return text


def build_requests(cfg: ServeConfig, n: int, seed: int, tokenizer: Any | None) -> list[BenchRequest]:
    tok = HFTokenizer(tokenizer) if tokenizer is not None else None
    if cfg.dataset == "random":
        return random_requests(
            n,
            input_len=cfg.input_len,
            output_len=cfg.output_len,
            seed=seed,
            range_ratio=cfg.range_ratio,
            tokenizer=tok,
        )
    return load_jsonl(Path(cfg.dataset), n, output_len=cfg.output_len or None, seed=seed, tokenizer=tok)


async def measure(
    send: SendOne,
    cfg: ServeConfig,
    spec: ArrivalSpec,
    requests: list[BenchRequest],
    warm: list[BenchRequest],
    desc: str,
) -> tuple[ServingMetrics, list[RequestTrace]]:
    await warm_up(send, warm, cfg.max_concurrency)
    offsets = arrival_offsets(len(requests), spec, cfg.seed)
    traces, duration = await drive(
        send, requests, offsets, max_concurrency=cfg.max_concurrency, progress=cfg.progress, desc=desc
    )
    return summarize(traces, duration, cfg.slos_ms), traces


async def until_answered(send: SendOne, req: BenchRequest, check: Any, timeout_s: float = 90.0) -> None:
    """Send one request at a time until one succeeds (consumer groups joined, topics known)."""
    deadline = time.monotonic() + timeout_s
    while True:
        trace = await send(req)
        if trace.success:
            return
        check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no successful answer within {timeout_s:.0f}s (last error: {trace.error})")


async def run_serving(settings: Settings, cfg: ServeConfig, *, say: Any = print) -> ServingReport:
    """Measure every rate three ways; returns the report (not yet written)."""
    from benchmarks.common.floor import FloorRelays
    from benchmarks.serving.inprocess import InProcessEngine
    from fleet.client import FleetClient
    from worker.engine import build_engine

    model = settings.model(cfg.model)
    built = await asyncio.to_thread(build_engine, model, settings.cache_path) if cfg.inprocess else None
    tokenizer = built[1] if built is not None else None
    requests = build_requests(cfg, cfg.num_prompts, cfg.seed, tokenizer)
    warm = build_requests(cfg, cfg.warmups, cfg.seed + 1_000_003, tokenizer)
    specs = [ArrivalSpec(request_rate=r, burstiness=cfg.burstiness, ramp_up=cfg.ramp_up) for r in cfg.rates]
    results: dict[str, list[tuple[ServingMetrics, list[RequestTrace]]]] = {
        "fleet": [],
        "floor": [],
        "inprocess": [],
    }

    if cfg.floor:
        async with (
            FloorRelays(settings, f"{settings.kafka.topic_prefix}-bench-floor") as relays,
            FleetClient(relays.settings) as fc,
        ):
            await until_answered(fleet_sender(fc, model="echo", timeout_s=5.0), requests[0], relays.check_alive)
            for spec in specs:
                say(f"floor: {spec.label}")
                send = fleet_sender(fc, model="echo", timeout_s=cfg.timeout_s)
                results["floor"].append(await measure(send, cfg, spec, requests, warm, "raw Kafka floor"))
                relays.check_alive()
    if built is not None:
        engine, tok, max_len = built
        async with InProcessEngine(settings, engine, tok, model=cfg.model, max_model_len=max_len) as eng:
            for spec in specs:
                say(f"in-process: {spec.label}")
                results["inprocess"].append(await measure(eng.send, cfg, spec, requests, warm, "in process"))
        engine.close()
    async with FleetClient(settings) as client:
        await until_answered(fleet_sender(client, model=cfg.model, timeout_s=30.0), requests[0], lambda: None, 300.0)
        for spec in specs:
            say(f"fleet: {spec.label}")
            send = fleet_sender(client, model=cfg.model, timeout_s=cfg.timeout_s)
            results["fleet"].append(await measure(send, cfg, spec, requests, warm, "fleet"))

    points = []
    for i, spec in enumerate(specs):
        fleet_m, fleet_t = results["fleet"][i]
        floor_m, floor_t = results["floor"][i] if cfg.floor else (None, [])
        inproc_m, inproc_t = results["inprocess"][i] if built is not None else (None, [])
        smp = {"fleet": samples(fleet_t)}
        if floor_m is not None:
            smp["floor"] = samples(floor_t)
        if inproc_m is not None:
            smp["inprocess"] = samples(inproc_t)
        points.append(
            ServingPoint(
                label=spec.label,
                request_rate=None if math.isinf(spec.request_rate) else spec.request_rate,
                fleet=fleet_m,
                inprocess=inproc_m,
                floor=floor_m,
                overhead=overhead(fleet_m, inproc_m, floor_m) if inproc_m and floor_m else None,
                samples=smp,
            )
        )
    headline = len(points) // 2
    if cfg.headline_rate is not None and cfg.headline_rate in cfg.rates:
        headline = cfg.rates.index(cfg.headline_rate)
    simulated = model.engine is EngineKind.SIMULATED
    lat = settings.latency
    config = {
        "model": cfg.model,
        "engine": f"{model.engine.value} ({model.path})" + (" SIMULATED" if simulated else ""),
        "dataset": (
            f"random, input {cfg.input_len} / output {cfg.output_len} tokens, range ratio {cfg.range_ratio}"
            if cfg.dataset == "random"
            else f"{cfg.dataset}, output {cfg.output_len or 'per line'}"
        ),
        "num_prompts": cfg.num_prompts,
        "warmups": cfg.warmups,
        "seed": cfg.seed,
        "rates": ["inf" if math.isinf(r) else r for r in cfg.rates],
        "burstiness": cfg.burstiness,
        "ramp_up": "none"
        if cfg.ramp_up is None
        else f"{cfg.ramp_up.strategy.value} {cfg.ramp_up.start_rps}->{cfg.ramp_up.end_rps}",
        "max_concurrency": cfg.max_concurrency or "unbounded",
        "slos_ms": cfg.slos_ms,
        "bootstrap": settings.kafka.bootstrap,
        "latency": f"fetch_max_wait_ms={lat.fetch_max_wait_ms}, acks={lat.acks}, linger 0, "
        f"chunk_interval_ms={lat.chunk_interval_ms}, chunk_max_tokens={lat.chunk_max_tokens}",
        "partitions": f"intake {settings.kafka.intake_partitions}, model {settings.kafka.model_partitions}, "
        f"reply {settings.kafka.reply_partitions}",
    }
    meta = collect_meta(machine=cfg.machine, accelerator=cfg.accelerator, simulated=simulated)
    return ServingReport(meta=meta, config=config, points=points, headline=headline)
