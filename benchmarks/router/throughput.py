"""Router throughput: how many requests per second one router process forwards from a backlog, against a
bare aiokafka relay with the same commit discipline, on the same broker in the same run.

    backlog of N valid requests (known model) in <prefix>.requests
        router: `fleet router` (decode, validate, deadline, model "auto" through the complexity classifier, dedup,
                overload; commit after acks)
        relay:  `python -m benchmarks.common.floor relay` (decode, publish, commit after the batch's acks)
    rate = requests that reached the model topic per second, between 5% and 95% of the backlog
    (start-up and group join are not part of it)

The two alternate, each repeat on fresh topics, and the goal (router >= 0.5x the relay) is judged on the
median of the per-repeat ratios. `--baseline DIR` adds a third arm in each repeat: the router of another
checkout (an earlier commit: `git worktree add DIR COMMIT`) on the same broker, so a change's cost is measured
before and after in the same run. Run `python -m benchmarks.router.throughput [--requests N --repeats R]`;
results go to benchmarks/results/router_<machine>_<date>_<commit>[_named].{json,md} (_named: --model m).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from benchmarks.common.floor import ECHO_MODEL, FloorRelays
from benchmarks.common.procs import Procs
from benchmarks.common.results import RESULTS_DIR, collect_meta, result_path
from contracts.codec import Codec
from contracts.messages import Request
from contracts.topics import Headers
from fleet.kafka import ensure_topics, fleet_topics, make_consumer
from fleet.settings import Settings
from fleet.supervisor import toml_value

GOAL_RATIO = 0.5
MODEL = "m"


@dataclass(frozen=True, slots=True)
class Run:
    kind: str  # "router", "relay" or "baseline" (the router of another checkout)
    repeat: int
    requests: int
    seconds: float  # from 5% to 95% of the backlog on the model topic
    per_s: float


def router_config(path: Path, prefix: str, partitions: int) -> Path:
    """One known model (simulated engine: the router never loads it) and no overload bound that a
    backlog with no workers could trip."""
    path.write_text(
        "\n".join(
            [
                f"cache_dir = {toml_value(str(path.parent / 'cache'))}",
                "[kafka]",
                f"topic_prefix = {toml_value(prefix)}",
                f"intake_partitions = {partitions}",
                f"model_partitions = {partitions}",
                "[router]",
                "overload_max_backlog = 1000000000",
                "[[router.tiers]]",  # "auto" runs the complexity classifier and lands on the one tier
                'name = "all"',
                f"model = {toml_value(MODEL)}",
                "max_score = inf",
                "[[models]]",
                f"name = {toml_value(MODEL)}",
                'path = "none"',
                'engine = "simulated"',
            ]
        )
        + "\n"
    )
    return path


async def fill(settings: Settings, model: str, n: int) -> None:
    """N valid JSON requests for `model` in the intake, keyed by id (as services send them)."""
    codec = Codec()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        reply_to = f"{settings.kafka.topic_prefix}.replies"
        futs = []
        for i in range(n):
            req = Request(
                id=f"r{i}", reply_to=reply_to, prompt=f"def f{i}(x):", model=model, max_tokens=8, timeout_ms=600_000
            )
            futs.append(
                await producer.send(
                    settings.kafka.topics.requests,
                    codec.encode(req),
                    key=req.id.encode(),
                    headers=[(Headers.CONTENT_TYPE, b"application/json")],
                )
            )
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def forwarded_rate(settings: Settings, topic: str, n: int, timeout_s: float, check: object) -> float:
    """Seconds between 5% and 95% of `n` records reaching `topic`, counted by reading it (the dev broker's
    end offsets can lag a batch behind, see docs/operations.md, the dev broker's gaps)."""
    consumer = make_consumer(settings, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.kafka.model_partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen = 0
        t_lo: float | None = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if callable(check):
                check()
            batch = await consumer.getmany(timeout_ms=20, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
            now = time.monotonic()
            if t_lo is None and seen >= 0.05 * n:
                t_lo = now
            if seen >= 0.95 * n and t_lo is not None:
                return max(1e-6, now - t_lo)
        raise TimeoutError(f"{topic}: {seen} of a backlog of {n} forwarded within {timeout_s:.0f} s")
    finally:
        await consumer.stop()


async def run_router(
    bootstrap: str, n: int, repeat: int, logs: Path, partitions: int, model: str = "auto", tree: Path | None = None
) -> Run:
    """The router of this checkout, or of the checkout `tree` (its packages first on the path, not this one's)."""
    kind = "router" if tree is None else "baseline"
    prefix = f"rt-{kind}-{repeat}-{uuid.uuid4().hex[:6]}"
    config = router_config(logs / f"{prefix}.toml", prefix, partitions)
    procs = Procs(bootstrap, logs / prefix, config)
    settings = procs.settings
    await ensure_topics(settings, fleet_topics(settings))
    await fill(settings, model, n)  # "auto": every request is classified, as "auto" traffic is
    # the other checkout's packages first on the child's path (and not this one's, the working directory)
    procs.start_router(env=None if tree is None else {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(tree)})
    try:
        secs = await forwarded_rate(settings, settings.kafka.topics.model(MODEL), n, 600, procs.check_alive)
    finally:
        await asyncio.to_thread(procs.stop_all)
    return Run(kind, repeat, n, round(secs, 3), round(0.9 * n / secs, 1))


async def run_relay(
    bootstrap: str, n: int, repeat: int, logs: Path, partitions: int, model: str = "", tree: Path | None = None
) -> Run:
    prefix = f"rt-relay-{repeat}-{uuid.uuid4().hex[:6]}"
    config = router_config(logs / f"{prefix}.toml", prefix, partitions)  # the same topics and client settings
    base = Procs(bootstrap, logs / prefix, config).settings
    async with FloorRelays(base, prefix, roles=("relay",), logs=logs / prefix) as relays:
        await fill(relays.settings, ECHO_MODEL, n)
        secs = await forwarded_rate(
            relays.settings, relays.settings.kafka.topics.model(ECHO_MODEL), n, 600, relays.check_alive
        )
    return Run("relay", repeat, n, round(secs, 3), round(0.9 * n / secs, 1))


async def measure(
    n: int, repeats: int, partitions: int, logs: Path, model: str = "auto", baseline: Path | None = None
) -> list[Run]:
    from fleet.broker import EmbeddedBroker, free_port

    broker = EmbeddedBroker("127.0.0.1", free_port(), log_file=logs / "broker.log")
    await broker.start()
    runs: list[Run] = []
    try:
        arms: list[tuple[Any, Path | None]] = [(run_relay, None), (run_router, None)]
        if baseline is not None:
            arms.append((run_router, baseline))
        for r in range(repeats):
            order = arms[r % len(arms) :] + arms[: r % len(arms)]  # each arm goes first in turn
            for fn, tree in order:
                run = await fn(broker.bootstrap, n, r, logs, partitions, model, tree)
                print(f"repeat {r} {run.kind}: {run.per_s:.0f} req/s ({run.seconds:.2f} s)", flush=True)
                runs.append(run)
    finally:
        await broker.stop()
    return runs


def summary(runs: list[Run]) -> dict[str, float]:
    by = {k: [r for r in runs if r.kind == k] for k in ("router", "relay", "baseline")}
    ratios = [
        rt.per_s / rl.per_s
        for rt, rl in zip(by["router"], by["relay"], strict=True)  # same repeat, side by side
    ]
    out = {
        "router_per_s_median": statistics.median(r.per_s for r in by["router"]),
        "relay_per_s_median": statistics.median(r.per_s for r in by["relay"]),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "goal_ratio": GOAL_RATIO,
    }
    if by["baseline"]:  # the same per-repeat medians for the other checkout's router
        pairs = list(zip(by["router"], by["baseline"], by["relay"], strict=True))
        out["baseline_per_s_median"] = statistics.median(b.per_s for b in by["baseline"])
        out["baseline_ratio_median"] = round(statistics.median(b.per_s / rl.per_s for _, b, rl in pairs), 3)
        out["router_vs_baseline_median"] = round(statistics.median(rt.per_s / b.per_s for rt, b, _ in pairs), 3)
    return out


def markdown(
    meta: dict[str, object], runs: list[Run], s: dict[str, float], model: str = "auto", baseline: str = ""
) -> str:
    traffic = 'model "auto" (every request classified)' if model == "auto" else f'the named model "{model}"'
    base = "baseline_per_s_median" in s

    lines = [
        "# Router throughput against a bare relay",
        "",
        f"Machine: {meta['machine_detail']}; commit {meta['commit']}; {meta['date']}.",
        f"Backlog of {runs[0].requests} valid requests for {traffic}; rate between 5% and 95% of it.",
        "",
        "| repeat | router req/s | relay req/s | ratio |" + (" baseline req/s | baseline ratio |" if base else ""),
        "| ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if base else ""),
    ]
    for r in sorted({run.repeat for run in runs}):
        rt = next(x for x in runs if x.repeat == r and x.kind == "router")
        rl = next(x for x in runs if x.repeat == r and x.kind == "relay")
        row = f"| {r} | {rt.per_s:.0f} | {rl.per_s:.0f} | {rt.per_s / rl.per_s:.2f}x |"
        if base:
            b = next(x for x in runs if x.repeat == r and x.kind == "baseline")
            row += f" {b.per_s:.0f} | {b.per_s / rl.per_s:.2f}x |"
        lines.append(row)
    verdict = "met" if s["ratio_median"] >= GOAL_RATIO else "NOT met"
    lines += [
        "",
        f"Median: router {s['router_per_s_median']:.0f} req/s, relay {s['relay_per_s_median']:.0f} req/s, "
        f"ratio {s['ratio_median']:.2f}x (goal >= {GOAL_RATIO}x: {verdict}).",
    ]
    if base:
        lines.append(
            f"Baseline (the router of {baseline}): {s['baseline_per_s_median']:.0f} req/s, ratio "
            f"{s['baseline_ratio_median']:.2f}x; this router against it, per repeat: "
            f"{s['router_vs_baseline_median']:.2f}x (median)."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.router.throughput", description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--machine", default=None)
    ap.add_argument("--model", default="auto", help=f'"auto" (classified) or "{MODEL}" (named: no classifier)')
    ap.add_argument(
        "--baseline", type=Path, default=None, help="a checkout of another commit: its router, as a third arm"
    )
    args = ap.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="router-throughput-"))
    baseline = args.baseline.resolve() if args.baseline is not None else None  # the child runs elsewhere
    runs = asyncio.run(measure(args.requests, args.repeats, args.partitions, logs, args.model, baseline))
    base = ""
    if args.baseline is not None:
        import subprocess

        head = subprocess.run(["git", "-C", str(args.baseline), "rev-parse", "--short", "HEAD"], capture_output=True)
        base = f"commit {head.stdout.decode().strip() or '?'} ({args.baseline})"
    run = collect_meta(machine=args.machine, simulated=False)
    meta = asdict(run)
    s = summary(runs)
    tag = None if args.model == "auto" else "named"  # named-model traffic: router_<...>_named.json
    result_path("router", run, "json", tag=tag, out_dir=args.out).write_text(
        json.dumps({"meta": meta, "model": args.model, "runs": [asdict(r) for r in runs], "summary": s}, indent=1)
    )
    result_path("router", run, "md", tag=tag, out_dir=args.out).write_text(markdown(meta, runs, s, args.model, base))
    print(markdown(meta, runs, s, args.model, base))


if __name__ == "__main__":
    main()
