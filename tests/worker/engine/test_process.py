"""The engine in its own process: same tokens as the engine stepping in this process, aborts
end requests with their reason, and a dead engine process is reported, never waited on."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.settings import ModelSettings
from tests.worker.engine.helpers import Pair, prompts, req, run
from worker.engine import build_engine
from worker.engine.api import EngineDied, FinishKind
from worker.engine.process import ProcessEngine, StartCancelled


def _settings(pair: Pair) -> ModelSettings:
    return ModelSettings(name="p", path=str(pair.target), draft_path=str(pair.draft), torch_threads=1)


@pytest.fixture
def process_engine(engine_pair: Pair, tmp_path: Path) -> Iterator[ProcessEngine]:
    engine = ProcessEngine(_settings(engine_pair), tmp_path, log_format="console", log_level="warning")
    yield engine
    engine.close()


def test_greedy_tokens_equal_the_in_process_engine(
    engine_pair: Pair, process_engine: ProcessEngine, tmp_path: Path
) -> None:
    local, _, _ = build_engine(_settings(engine_pair), tmp_path)
    ps = prompts(6, seed=3)
    arrivals = [(0, req(f"r{i}", p, max_tokens=12)) for i, p in enumerate(ps)]
    want = run(local, arrivals)
    got = run(process_engine, [(0, req(f"r{i}", p, max_tokens=12)) for i, p in enumerate(ps)])
    assert {k: v.tokens for k, v in got.items()} == {k: v.tokens for k, v in want.items()}
    assert all(r.finished is not None for r in got.values())
    assert not process_engine.has_unfinished()
    stats = process_engine.stats()
    assert stats.running == 0 and stats.weights_bytes > 0


def test_abort_finishes_with_the_reason(process_engine: ProcessEngine) -> None:
    process_engine.add_request(req("long", prompts(1)[0], max_tokens=500))
    first = []
    while not first:
        first = process_engine.step()
    process_engine.abort_request("long", FinishKind.CANCELLED)
    finished = None
    while process_engine.has_unfinished():
        for out in process_engine.step():
            finished = out.finished or finished
    assert finished is FinishKind.CANCELLED


def test_a_dead_engine_process_raises(process_engine: ProcessEngine) -> None:
    process_engine.add_request(req("x", prompts(1)[0], max_tokens=500))
    os.kill(process_engine._proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
    with pytest.raises(EngineDied):
        for _ in range(200):
            process_engine.step()
    with pytest.raises(EngineDied):
        process_engine.add_request(req("y", [5, 6, 7]))
    process_engine.abort_request("x", FinishKind.ABANDONED)  # a no-op once dead, never raises


def test_an_idle_engine_process_death_shows_in_stats(process_engine: ProcessEngine) -> None:
    assert process_engine.stats().running == 0
    os.kill(process_engine._proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
    process_engine._proc.join(timeout=10)
    with pytest.raises(EngineDied):
        process_engine.stats()


def test_a_cancelled_start_kills_the_loading_process(engine_pair: Pair, tmp_path: Path) -> None:
    """A worker told to stop while its engine loads does not wait for the load (Ctrl-C during `fleet up`)."""
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)  # while the spawned interpreter is still importing and loading
    timer.start()
    children_before = {p.pid for p in mp.active_children()}
    with pytest.raises(StartCancelled, match="stopped while the engine process"):
        ProcessEngine(_settings(engine_pair), tmp_path, log_format="console", log_level="warning", cancel=cancel)
    timer.join()
    assert {p.pid for p in mp.active_children()} <= children_before  # the loading process is gone, reaped
