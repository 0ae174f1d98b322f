"""What the embedded broker's journal costs against memory storage, side by side in one run (rounds alternate, so a
busy machine slows both alike). Each storage runs as `fleet broker` does, in a process of its own (for the journal:
Tansu in memory behind a Tansu proxy, and the journal writer copying every record and commit to files):

    one hop        produce (linger 0) -> a consumer with the fleet's fetch_max_wait_ms sees it, p50/p99 ms;
                   and the produce's acknowledgement alone, p50/p99 ms
    produce        records/s of a producer sending as fast as it can (linger 5 ms, 4 partitions)
    consume        records/s of a consumer reading them all back from the start
    CPU            of the broker's processes (owner, Tansu, proxy): % of one core while idle (clients connected,
                   nothing sent: the journal polls every partition), and CPU seconds per 10,000 records produced
                   and consumed in the throughput phase
    fill back      (journal) a broker started on the journal: seconds to fill back every record

Variants: memory, the journal with its defaults, and the journal with a 5 ms fetch wait (less to lose to a SIGKILL,
more idle CPU).

And the whole fleet on each (memory, journal), as `fleet up` runs it with one SIMULATED model (timed token emission,
no model: the numbers are the broker path's, not a model's):

    fleet TTFT     a client's time to the first chunk of sequential requests through router and worker (three
                   Kafka hops), p50/p99 ms
    fleet idle CPU every process of `fleet up` (broker, proxy, owner, router, worker), % of one core, nothing sent

Run `python -m benchmarks.serving.broker_storage [--records N] [--rounds R]`; results go to
benchmarks/results/broker_storage_<machine>_<date>_<commit>.{json,md} (docs/operations.md, "The dev broker's
storage").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.common.results import collect_meta, result_path
from contracts.messages import Chunk
from fleet.broker import EmbeddedBroker, free_port, port_is_open
from fleet.client import FleetClient
from fleet.runtime import spawn_cli
from fleet.settings import load_settings

VALUE = b"x" * 256
HOPS = 400
FETCH_MAX_WAIT_MS = 5  # the fleet's default ([latency] fetch_max_wait_ms)
# storage variants: name -> the [kafka] settings of the broker's process
VARIANTS: dict[str, dict[str, object]] = {
    "memory": {"embedded_storage": "memory"},
    "journal": {"embedded_storage": "journal"},  # the defaults (embedded_journal_wait_ms 20)
    "journal-5ms": {"embedded_storage": "journal", "embedded_journal_wait_ms": 5},
}


@dataclass(slots=True)
class Run:
    storage: str
    round: int
    records: int
    hop_p50_ms: float = 0.0
    hop_p99_ms: float = 0.0
    ack_p50_ms: float = 0.0
    ack_p99_ms: float = 0.0
    produce_per_s: float = 0.0
    consume_per_s: float = 0.0
    idle_cpu_pct: float = 0.0
    cpu_s_per_10k: float = 0.0
    journal_bytes_per_record: float | None = None
    fill_back_s: float | None = None
    fill_back_records: int | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class FleetRun:
    storage: str
    round: int
    requests: int
    ttft_p50_ms: float = 0.0
    ttft_p99_ms: float = 0.0
    idle_cpu_pct: float = 0.0


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
                out += _tree(int(c))
    except OSError:
        pass
    return out


def _cpu_s(pid: int) -> float:
    """utime + stime of `pid` and its descendants (the broker owner, Tansu and the proxy; `fleet up`'s router and
    workers), in seconds."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


async def hop_latency(bootstrap: str, topic: str) -> tuple[list[float], list[float]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    await producer.start()
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    hops, acks = [], []
    try:
        for _ in range(HOPS):
            t0 = time.perf_counter()
            await producer.send_and_wait(topic, VALUE, partition=0)
            acks.append((time.perf_counter() - t0) * 1000)
            while not (await consumer.getmany(tp, timeout_ms=1000)).get(tp):
                pass
            hops.append((time.perf_counter() - t0) * 1000)
    finally:
        await producer.stop()
        await consumer.stop()
    return hops, acks


async def throughput(bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 << 10)
    await producer.start()
    t0 = time.perf_counter()
    try:
        sent = [await producer.send(topic, VALUE) for _ in range(n)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    produce = n / (time.perf_counter() - t0)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_MAX_WAIT_MS
    )
    await consumer.start()
    got = 0
    t0 = time.perf_counter()
    try:
        while got < n:
            got += sum(len(v) for v in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values())
    finally:
        await consumer.stop()
    return produce, n / (time.perf_counter() - t0)


async def one_run(storage: str, rnd: int, n: int, work: Path) -> Run:
    cache = work / f"{storage}-{rnd}"
    cache.mkdir(parents=True)
    port = free_port()
    config = cache / "fleet.toml"
    kafka = "".join(f"{k} = {json.dumps(v)}\n" for k, v in VARIANTS[storage].items())
    config.write_text(f'cache_dir = {json.dumps(str(cache))}\nlog_level = "warning"\n[kafka]\n{kafka}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    owner = spawn_cli(["broker", "--port", str(port), "--config", str(config)], env=env, log_file=cache / "broker.log")
    run = Run(storage, rnd, n)
    bootstrap = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not port_is_open("127.0.0.1", port):
            if owner.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"fleet broker ({storage}) did not start: {(cache / 'broker.log').read_text()[-2000:]}"
                )
            await asyncio.sleep(0.1)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic("bench.hop", 1, 1), NewTopic("bench.bulk", 4, 1)])
        await admin.close()
        await asyncio.sleep(1.0)  # the journal finds new topics every 500 ms
        cpu0, t0 = _cpu_s(owner.pid), time.monotonic()
        await asyncio.sleep(5.0)
        run.idle_cpu_pct = round((_cpu_s(owner.pid) - cpu0) / (time.monotonic() - t0) * 100, 1)
        hops, acks = await hop_latency(bootstrap, "bench.hop")
        run.hop_p50_ms, run.hop_p99_ms = _pct(hops, 0.5), _pct(hops, 0.99)
        run.ack_p50_ms, run.ack_p99_ms = _pct(acks, 0.5), _pct(acks, 0.99)
        cpu0 = _cpu_s(owner.pid)
        run.produce_per_s, run.consume_per_s = (round(x) for x in await throughput(bootstrap, "bench.bulk", n))
        await asyncio.sleep(1.0)  # let the journal finish copying: its work is part of the cost
        run.cpu_s_per_10k = round((_cpu_s(owner.pid) - cpu0) / n * 10_000, 3)
    finally:
        owner.send_signal(signal.SIGTERM)
        await asyncio.to_thread(owner.wait, 30)
    if storage.startswith("journal"):
        journal = cache / f"broker-{port}"
        size = sum(f.stat().st_size for f in (journal / "log").rglob("*") if f.is_file())
        broker = EmbeddedBroker("127.0.0.1", free_port(), journal_dir=journal)
        await broker.start()
        run.fill_back_s, run.fill_back_records = round(broker.last_replay_s or 0.0, 3), broker.last_replayed
        run.journal_bytes_per_record = round(size / max(1, broker.last_replayed), 1)
        await broker.stop()
    return run


async def fleet_run(storage: str, rnd: int, n: int, work: Path) -> FleetRun:
    d = work / f"fleet-{storage}-{rnd}"
    d.mkdir(parents=True)
    port = free_port()
    config = d / "fleet.toml"
    kafka = "".join(f"{k} = {json.dumps(v)}\n" for k, v in VARIANTS[storage].items())
    config.write_text(
        f'cache_dir = {json.dumps(str(d))}\nlog_level = "warning"\n[kafka]\n{kafka}[[models]]\nname = "sim"\n'
        'path = "none"\nengine = "simulated"\nsimulated_tokens_per_s = 200.0\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    log_file = d / "up.log"
    args = ["up", "-c", str(config), "--port", str(port), "--no-smoke"]
    up = spawn_cli(args, env=env, log_file=log_file)
    run = FleetRun(storage, rnd, n)
    try:
        deadline = time.monotonic() + 120
        while b"worker sim" not in log_file.read_bytes():
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fleet up ({storage}) did not start: {log_file.read_text()[-2000:]}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(5.0)  # the groups settle
        cpu0, t0 = _cpu_s(up.pid), time.monotonic()
        await asyncio.sleep(10.0)
        run.idle_cpu_pct = round((_cpu_s(up.pid) - cpu0) / (time.monotonic() - t0) * 100, 1)
        settings = load_settings(config, env={"FLEET_EMBEDDED_PORT": str(port)})
        ttfts = []
        async with FleetClient(settings) as client:
            for i in range(n + 3):  # the first three warm the client up
                t0 = time.perf_counter()
                first = None
                async for ev in client.stream(f"q{i}", model="sim", max_tokens=4, timeout_s=30):
                    if first is None and isinstance(ev, Chunk):
                        first = time.perf_counter()
                if i >= 3 and first is not None:
                    ttfts.append((first - t0) * 1000)
        run.ttft_p50_ms, run.ttft_p99_ms = _pct(ttfts, 0.5), _pct(ttfts, 0.99)
    finally:
        up.send_signal(signal.SIGINT)
        await asyncio.to_thread(up.wait, 60)
    return run


def summary(runs: list[Run]) -> dict[str, dict[str, float]]:
    keys = [
        "hop_p50_ms",
        "hop_p99_ms",
        "ack_p50_ms",
        "ack_p99_ms",
        "produce_per_s",
        "consume_per_s",
        "idle_cpu_pct",
        "cpu_s_per_10k",
    ]
    out: dict[str, dict[str, float]] = {}
    for storage in VARIANTS:
        mine = [r for r in runs if r.storage == storage]
        if mine:
            out[storage] = {k: round(statistics.median(getattr(r, k) for r in mine), 3) for k in keys}
    return out


def report(runs: list[Run], meta: dict[str, object], fleets: list[FleetRun] | None = None) -> str:
    s = summary(runs)
    m, j = s["memory"], s["journal"]
    j5 = s.get("journal-5ms")
    lines = [
        f"# Embedded broker storage: journal against memory ({meta['machine_detail']}, commit {meta['commit']})",
        "",
        f"Medians of {len({r.round for r in runs})} alternating rounds; {runs[0].records} records of 256 B for "
        f"throughput, {HOPS} sequential records for latency, consumers at fetch_max_wait_ms={FETCH_MAX_WAIT_MS}.",
        "",
        "| measure | memory | journal (default, 20 ms wait) | journal / memory | journal, 5 ms wait |",
        "| --- | --- | --- | --- | --- |",
    ]
    names = {
        "hop_p50_ms": "one hop p50 (ms)",
        "hop_p99_ms": "one hop p99 (ms)",
        "ack_p50_ms": "produce ack p50 (ms)",
        "ack_p99_ms": "produce ack p99 (ms)",
        "produce_per_s": "produce (records/s)",
        "consume_per_s": "consume (records/s)",
        "idle_cpu_pct": "broker CPU while idle (% of a core)",
        "cpu_s_per_10k": "broker CPU s per 10k records (throughput phase)",
    }
    for k, name in names.items():
        ratio = j[k] / m[k] if m[k] else float("nan")
        lines.append(
            f"| {name} | {m[k]:g} | {j[k]:g} | {ratio:.2f} | {j5[k]:g} |"
            if j5
            else f"| {name} | {m[k]:g} | {j[k]:g} | {ratio:.2f} | |"
        )
    fills = [r for r in runs if r.storage == "journal" and r.fill_back_s is not None]
    if fills:
        f = fills[-1]
        rate = (f.fill_back_records or 0) / f.fill_back_s if f.fill_back_s else 0.0
        lines += [
            "",
            f"Fill back (a broker started on the journal): {f.fill_back_records} records in {f.fill_back_s} s "
            f"({rate:,.0f} records/s); the journal holds {f.journal_bytes_per_record} bytes per 256-byte record.",
        ]
    lines += [
        "",
        "Every run:",
        "",
        "| storage | round | hop p50 | hop p99 | ack p50 | ack p99 | produce/s | consume/s | idle CPU % | CPU s/10k |",
    ]
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        lines.append(
            f"| {r.storage} | {r.round} | {r.hop_p50_ms} | {r.hop_p99_ms} | {r.ack_p50_ms} | {r.ack_p99_ms} | "
            f"{r.produce_per_s} | {r.consume_per_s} | {r.idle_cpu_pct} | {r.cpu_s_per_10k} |"
        )
    if fleets:
        lines += [
            "",
            f"The whole fleet (`fleet up`, one SIMULATED model at 200 tokens/s, {fleets[0].requests} sequential "
            "requests of 4 tokens per run; medians of the runs):",
            "",
            "| measure | memory | journal |",
            "| --- | --- | --- |",
        ]
        for k, name in (
            ("ttft_p50_ms", "client TTFT p50 (ms)"),
            ("ttft_p99_ms", "client TTFT p99 (ms)"),
            ("idle_cpu_pct", "idle CPU of every process (% of a core)"),
        ):
            med = {
                st: statistics.median(getattr(f, k) for f in fleets if f.storage == st) for st in ("memory", "journal")
            }
            lines.append(f"| {name} | {med['memory']:g} | {med['journal']:g} |")
        lines += ["", "| storage | round | TTFT p50 | TTFT p99 | idle CPU % |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {f.storage} | {f.round} | {f.ttft_p50_ms} | {f.ttft_p99_ms} | {f.idle_cpu_pct} |" for f in fleets]
    lines += ["", "Command: `python -m benchmarks.serving.broker_storage " + str(meta.get("args", "")) + "`", ""]
    return "\n".join(lines)


async def main_async(n: int, rounds: int, fleet_requests: int) -> tuple[list[Run], list[FleetRun]]:
    runs, fleets = [], []
    with tempfile.TemporaryDirectory(prefix="broker-storage-") as tmp:
        for rnd in range(rounds):
            order = list(VARIANTS) if rnd % 2 == 0 else list(reversed(VARIANTS))
            for storage in order:
                runs.append(await one_run(storage, rnd, n, Path(tmp)))
                print(asdict(runs[-1]), flush=True)
        for rnd in range(rounds if fleet_requests else 0):
            for storage in ("memory", "journal") if rnd % 2 == 0 else ("journal", "memory"):
                fleets.append(await fleet_run(storage, rnd, fleet_requests, Path(tmp)))
                print(asdict(fleets[-1]), flush=True)
    return runs, fleets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20_000, help="records for the throughput runs")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of memory and journal")
    ap.add_argument("--fleet-requests", type=int, default=40, help="requests per whole-fleet run (0: none)")
    args = ap.parse_args()
    runs, fleets = asyncio.run(main_async(args.records, args.rounds, args.fleet_requests))
    run = collect_meta(simulated=bool(fleets))
    meta = asdict(run)
    meta["args"] = f"--records {args.records} --rounds {args.rounds} --fleet-requests {args.fleet_requests}"
    data = {
        "meta": meta,
        "summary": summary(runs),
        "runs": [asdict(r) for r in runs],
        "fleet_runs": [asdict(f) for f in fleets],
    }
    result_path("broker_storage", run, "json").write_text(json.dumps(data, indent=1) + "\n")
    text = report(runs, meta, fleets)
    result_path("broker_storage", run, "md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
