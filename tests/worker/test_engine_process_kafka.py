"""A worker whose engine process dies mid-generation exits non-zero without committing, and the
request is finished by the other worker of the model, which resumes it where it stopped (real broker, real
worker processes)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts import Chunk, Done
from fleet.client import FleetClient, Restart
from tests.fixtures_kafka import FleetProcs, started, write_config
from tests.kafka_helpers import first_status, status_pid


@pytest.fixture
async def two_workers(broker: str, tmp_path: Path, tiny_checkpoint: Path) -> AsyncIterator[FleetProcs]:
    cfg = write_config(tmp_path / "fleet.toml", [{"name": "m", "path": str(tiny_checkpoint)}], prefix="enproc")
    async with started(cfg, broker, tmp_path, [("m", "w1"), ("m", "w2")]) as fleet:
        yield fleet


def _engine_processes(pid: int) -> list[int]:
    """Children of `pid` (whichever of its threads started them) that multiprocessing spawned,
    leaving out its resource tracker."""
    kids = [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]
    return [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]


async def test_engine_process_death_hands_the_request_to_another_worker(two_workers: FleetProcs) -> None:
    fleet = two_workers
    async with FleetClient(fleet.settings) as c:
        events = []
        killed: int | None = None
        async for ev in c.stream("def slow():", model="m", max_tokens=2000, timeout_s=120):
            events.append(ev)
            if killed is None and isinstance(ev, Chunk):
                worker_pid = status_pid(
                    await first_status(fleet.settings, lambda st: st.model == "m" and st.running > 0)
                )
                (engine_pid,) = _engine_processes(worker_pid)
                os.kill(engine_pid, signal.SIGKILL)
                killed = worker_pid
    assert killed is not None
    # the other worker continues it from its progress record (issue 13): same run, no restart for the client
    assert not any(isinstance(ev, Restart) for ev in events), "resumed, not restarted"
    done = events[-1]
    assert isinstance(done, Done) and done.text == "".join(ev.text for ev in events if isinstance(ev, Chunk))
    assert {ev.run_id for ev in events if isinstance(ev, Chunk | Done)} == {done.run_id}
    name = next(n for n, p in fleet.procs.items() if p.pid == killed)
    other = next(n for n in ("w1", "w2") if n != name)
    assert '"worker.resuming"' in fleet.log(other)
    t0 = time.monotonic()
    code = fleet.wait(name, timeout_s=30)
    assert code != 0, "a worker that lost its engine must exit non-zero"
    assert time.monotonic() - t0 < 30
    assert '"worker.engine_process_died"' in fleet.log(name)
