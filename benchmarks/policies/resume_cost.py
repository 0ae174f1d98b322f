"""What resume costs on the token path: client TTFT and the gap between chunks through the whole fleet (router and
one worker as real processes, a real broker), with `worker.resume` on and off, alternating runs.

With resume on, a run's start record is acknowledged before it enters the engine and each chunk waits for the
progress record that covers it (worker/progress.py). SIMULATED engine (timed token emission, no model): the
numbers are the fleet's plumbing, not a model's speed.

    python -m benchmarks.policies.resume_cost [--requests 60] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common.procs import Procs, simulated_config, wait_workers
from contracts import Chunk
from fleet.broker import EmbeddedBroker, free_port
from fleet.client import FleetClient
from fleet.kafka import ensure_topics, fleet_topics


async def one_setting(bootstrap: str, root: Path, *, resume: bool, requests: int) -> tuple[float, float]:
    """(TTFT p50 ms, chunk gap p50 ms) over `requests` sequential streams (the first 10 are warm-up for TTFT)."""
    cfg = simulated_config(
        root / "fleet.toml",
        prefix=f"rc{int(resume)}{time.time_ns() % 10**6}",
        partitions=2,
        tokens_per_s=200.0,
        latency={"chunk_interval_ms": 20, "chunk_max_tokens": 4},
    )
    cfg.write_text(cfg.read_text() + f"[worker]\nresume = {'true' if resume else 'false'}\n")
    procs = Procs(bootstrap, root / "logs", cfg)
    await ensure_topics(procs.settings, fleet_topics(procs.settings))
    procs.start_router()
    procs.start_worker("sim", "w1")
    ttft: list[float] = []
    gaps: list[float] = []
    try:
        await wait_workers(procs.settings, "sim", 1, check=procs.check_alive)
        await asyncio.sleep(3.0)  # the group's first join settles
        async with FleetClient(procs.settings) as c:
            for k in range(requests):
                t0 = time.perf_counter()
                last: float | None = None
                async for ev in c.stream(f"prompt number {k} ", model="sim", max_tokens=20, timeout_s=30):
                    if isinstance(ev, Chunk):
                        now = time.perf_counter()
                        if last is None:
                            ttft.append((now - t0) * 1000)
                        else:
                            gaps.append((now - last) * 1000)
                        last = now
    finally:
        procs.stop_all()
    return statistics.median(ttft[10:]), statistics.median(gaps)


async def main(requests: int, rounds: int) -> None:
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start_process()
    broker.wait_ready_sync()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(rounds):
                for resume in (False, True):
                    root = Path(tmp) / f"{r}-{int(resume)}"
                    t, g = await one_setting(broker.bootstrap, root, resume=resume, requests=requests)
                    print(f"SIMULATED resume={resume}: TTFT p50 {t:.1f} ms, chunk gap p50 {g:.1f} ms", flush=True)
    finally:
        broker.stop_sync()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    asyncio.run(main(a.requests, a.rounds))
