"""The engine driver without Kafka: real engines (the simulated one, a tiny checkpoint, the simulated
engine in its own process), requests in, each request's events out as plain data."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from contracts.messages import Chunk, Done, Error, ErrorCode, FinishReason, Request
from fleet.settings import EngineKind, LatencySettings, ModelSettings
from worker.driver import EngineDriver, Poisoned, Update
from worker.engine import build_engine
from worker.engine.api import Engine, FinishKind
from worker.engine.process import ProcessEngine
from worker.engine.simulated import ByteTokenizer, SimulatedEngine
from worker.inputs import prompt_token_ids

TOK = ByteTokenizer()
LATENCY = LatencySettings(chunk_interval_ms=0, chunk_max_tokens=1)  # a chunk per token: easy to count


def driver_for(
    engine: Engine, tokenizer: object = TOK, *, max_attempts: int = 3, max_model_len: int = 4096
) -> EngineDriver:
    return EngineDriver(
        engine, tokenizer, model="m", max_model_len=max_model_len, latency=LATENCY, max_attempts=max_attempts
    )


def request(rid: str, prompt: str, *, max_tokens: int = 8, **kw: object) -> Request:
    return Request(id=rid, reply_to="replies", prompt=prompt, max_tokens=max_tokens, **kw)  # type: ignore[arg-type]


def add(driver: EngineDriver, req: Request) -> str:
    ids = prompt_token_ids(req, driver.tokenizer, driver.max_model_len)
    return driver.add(req, ids, intake_s=time.time()).run_id


@dataclass
class Seen:
    """Everything the driver handed out, by request id."""

    chunks: dict[str, list[Chunk]] = field(default_factory=dict)
    final: dict[str, list[Chunk | Done | Error]] = field(default_factory=dict)
    finished: dict[str, FinishKind] = field(default_factory=dict)
    poisoned: list[Poisoned] = field(default_factory=list)
    died: str | None = None

    def take(self, upd: Update) -> None:
        for ev in upd.requests:
            rid = ev.state.request.id
            self.chunks.setdefault(rid, []).extend(ev.chunks)
            if ev.finished is not None:
                self.finished[rid] = ev.finished
                self.final[rid] = ev.final
        self.poisoned.extend(upd.poisoned)
        self.died = upd.engine_died or self.died

    def text(self, rid: str) -> str:
        return "".join(c.text for c in self.chunks[rid] + self.final[rid] if isinstance(c, Chunk))

    def terminal(self, rid: str) -> Done | Error:
        last = self.final[rid][-1]
        assert isinstance(last, Done | Error)
        return last


async def run_until_idle(driver: EngineDriver, seen: Seen, *, timeout_s: float = 30.0) -> None:
    """Step until the driver holds no request (or the engine died)."""
    deadline = time.monotonic() + timeout_s
    while driver.states and seen.died is None:
        assert time.monotonic() < deadline, f"still running: {list(driver.states)}"
        seen.take(await asyncio.wait_for(driver.step(), timeout_s))


async def test_requests_stream_chunks_then_done() -> None:
    engine = SimulatedEngine(tokens_per_s=2000.0, max_running=4)
    driver, seen = driver_for(engine), Seen()
    for i in range(3):
        add(driver, request(f"r{i}", f"abc{i}", max_tokens=6))
    await run_until_idle(driver, seen)
    for i in range(3):
        rid = f"r{i}"
        done = seen.terminal(rid)
        assert isinstance(done, Done)
        assert done.text == f"abc{i}ab" == seen.text(rid)  # the simulated engine cycles the prompt
        assert done.finish_reason is FinishReason.LENGTH and seen.finished[rid] is FinishKind.LENGTH
        assert done.usage.prompt_tokens == 4 and done.usage.completion_tokens == 6
        assert [c.seq for c in seen.chunks[rid]] == list(range(6)) and done.seq == 6
    assert not driver.by_request and not engine.has_unfinished()
    assert driver.counts.engine_steps >= 6 and driver.counts.engine_failures == 0


async def test_a_stop_string_ends_the_request_and_frees_its_slot() -> None:
    engine = SimulatedEngine(tokens_per_s=2000.0, max_running=4)
    driver, seen = driver_for(engine), Seen()
    add(driver, request("s", "hello STOP world", max_tokens=100, stop=["STOP"]))
    await run_until_idle(driver, seen)
    done = seen.terminal("s")
    assert isinstance(done, Done) and done.text == "hello " == seen.text("s")
    assert done.finish_reason is FinishReason.STOP and done.usage.completion_tokens == len("hello STOP")
    # the engine was told to drop it: its slot is free without running to max_tokens
    for _ in range(3):
        if not engine.has_unfinished():
            break
        await driver.step()
    assert not engine.has_unfinished() and engine.stats().running == 0


async def test_cancel_ends_a_running_request_with_an_error() -> None:
    engine = SimulatedEngine(tokens_per_s=500.0, max_running=4)
    driver, seen = driver_for(engine), Seen()
    add(driver, request("c", "xyz", max_tokens=10_000))
    add(driver, request("k", "keep", max_tokens=5))
    seen.take(await driver.step())
    assert driver.cancel("c").requests == []  # running: the engine ends it at its next step
    await run_until_idle(driver, seen)
    err = seen.terminal("c")
    assert isinstance(err, Error) and err.code is ErrorCode.CANCELLED and seen.finished["c"] is FinishKind.CANCELLED
    assert isinstance(seen.terminal("k"), Done)


async def test_expire_overdue_answers_expired_and_stops_the_engine_work() -> None:
    engine = SimulatedEngine(tokens_per_s=500.0, max_running=4)
    driver, seen = driver_for(engine), Seen()
    deadline_ms = int(time.time() * 1000) + 60_000
    add(driver, request("late", "abc", max_tokens=10_000, deadline_ms=deadline_ms))
    add(driver, request("free", "abc", max_tokens=10_000))
    seen.take(await driver.step())
    assert not driver.expire_overdue(time.time(), grace_ms=500)  # not due yet: nothing
    upd = driver.expire_overdue(deadline_ms / 1000 + 1.0, grace_ms=500)
    seen.take(upd)
    err = seen.terminal("late")
    assert isinstance(err, Error) and err.code is ErrorCode.EXPIRED and upd.at_s == deadline_ms / 1000 + 1.0
    assert driver.counts.expired_by_worker == 1 and set(driver.by_request) == {"free"}
    driver.abandon_where(lambda s: True)
    assert driver.counts.abandoned == 1 and not driver.states
    for _ in range(3):  # the engine drops both at its next step; nothing more comes out of the driver
        upd = await driver.step()
        assert not upd.requests
        if not engine.has_unfinished():
            break
    assert not engine.has_unfinished()


async def test_stalled_counts_only_while_the_engine_holds_work() -> None:
    engine = SimulatedEngine(tokens_per_s=1000.0, max_running=4)
    driver = driver_for(engine)
    await asyncio.sleep(0.2)
    assert driver.stalled_s() == 0.0  # idle is not stalled
    add(driver, request("a", "abc", max_tokens=3))
    assert driver.stalled_s() < 0.1  # counted from when the work arrived, not from the idle spell
    await asyncio.sleep(0.2)
    assert driver.stalled_s() >= 0.2
    await driver.step()
    assert driver.stalled_s() < 0.1


async def test_a_failing_step_is_isolated_to_its_culprit() -> None:
    """The step fails while the request holding the marker runs: its batchmates finish normally, the
    culprit alone is charged, and after `max_attempts` it is handed out as poisoned."""
    engine = SimulatedEngine(tokens_per_s=2000.0, max_running=8, fail_on=b"BOOM")
    driver, seen = driver_for(engine, max_attempts=2), Seen()
    for i in range(5):
        add(driver, request(f"ok{i}", f"fine {i}", max_tokens=4))
    add(driver, request("bad", "a BOOM here", max_tokens=4))
    first = await driver.step()
    assert first.requests == [] and driver.counts.engine_failures == 1
    # a request that arrives while isolating is held back; cancelling it answers at once
    add(driver, request("held", "later", max_tokens=4))
    cancelled = driver.cancel("held")
    seen.take(cancelled)
    held = seen.terminal("held")
    assert isinstance(held, Error) and held.code is ErrorCode.CANCELLED
    add(driver, request("after", "later", max_tokens=4))
    await run_until_idle(driver, seen)
    for i in range(5):
        assert isinstance(seen.terminal(f"ok{i}"), Done), i
    assert isinstance(seen.terminal("after"), Done)
    assert "bad" not in seen.final
    (p,) = seen.poisoned
    assert p.state.request.id == "bad" and p.state.attempts == 2
    assert "failed 2 times alone" in p.reason and "fail marker" in p.reason
    assert not driver.states and not driver.by_request


async def test_run_hands_updates_to_the_sink_until_closed() -> None:
    engine = SimulatedEngine(tokens_per_s=2000.0, max_running=4)
    driver, seen = driver_for(engine), Seen()
    task = asyncio.create_task(driver.run(seen.take))
    await asyncio.sleep(0.05)  # idle: waits for work
    add(driver, request("r", "hey", max_tokens=5))
    for _ in range(200):
        if "r" in seen.final:
            break
        await asyncio.sleep(0.01)
    assert isinstance(seen.terminal("r"), Done) and seen.text("r") == "heyhe"
    driver.close()
    await asyncio.wait_for(task, 5)


async def test_tiny_checkpoint_text_is_the_engines_tokens_decoded(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A real model: what the driver streams adds up to the decode of the tokens the same engine
    produces when stepped directly, and a stop string cuts it where the text has it."""
    import torch

    threads = torch.get_num_threads()
    try:
        await _tiny_checkpoint_case(ModelSettings(name="t", path=str(tiny_checkpoint), torch_threads=1), tmp_path)
    finally:
        torch.set_num_threads(threads)  # building the engine set it process-wide


async def _tiny_checkpoint_case(model: ModelSettings, tmp_path: Path) -> None:
    from worker.engine.api import EngineRequest, SamplingParams

    engine, tokenizer, max_len = build_engine(model, tmp_path)
    driver, seen = driver_for(engine, tokenizer, max_model_len=max_len), Seen()
    add(driver, request("a", "the cat sat", max_tokens=12))
    await run_until_idle(driver, seen)
    done = seen.terminal("a")
    assert isinstance(done, Done) and done.text == seen.text("a")

    direct, _, _ = build_engine(model, tmp_path)
    ids = prompt_token_ids(request("a", "the cat sat"), tokenizer, max_len)
    direct.add_request(EngineRequest("x", ids, SamplingParams(max_tokens=12)))
    tokens: list[int] = []
    while direct.has_unfinished():
        for out in direct.step():
            tokens.extend(out.new_token_ids)
    assert done.usage.completion_tokens == len(tokens)
    assert done.text == tokenizer.decode(tokens, skip_special_tokens=True)
    if len(done.text.strip()) >= 4:  # a stop string taken from the middle of that text cuts it there
        stop = done.text.strip()[2:4]
        seen2 = Seen()
        add(driver, request("b", "the cat sat", max_tokens=12, stop=[stop]))
        await run_until_idle(driver, seen2)
        cut = seen2.terminal("b")
        assert isinstance(cut, Done) and cut.text == done.text[: done.text.index(stop)]


@pytest.fixture
def process_engine(tmp_path: Path) -> Iterator[ProcessEngine]:
    """The simulated engine in its own process (the ProcessEngine plumbing without a model)."""
    model = ModelSettings(
        name="p", path="unused", engine=EngineKind.SIMULATED, simulated_tokens_per_s=1000.0, max_model_len=4096
    )
    engine = ProcessEngine(model, tmp_path, log_format="console", log_level="warning")
    yield engine
    engine.close()


async def test_engine_process_death_ends_the_driver(process_engine: ProcessEngine) -> None:
    driver, seen = driver_for(process_engine), Seen()
    add(driver, request("r", "abc", max_tokens=100_000))
    seen.take(await driver.step())
    os.kill(process_engine._proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
    task = asyncio.create_task(driver.run(seen.take))
    await asyncio.wait_for(task, 10)  # run() returns once the engine is gone
    assert seen.died is not None and "exited" in seen.died
    assert "r" in driver.by_request  # nothing answered: the worker abandons it uncommitted


async def test_adding_to_a_stopped_engine_process_never_blocks(process_engine: ProcessEngine) -> None:
    """A stopped engine process never empties its command pipe (64 KiB); adding requests must not
    block the event loop (the watchdog runs on it), however many and however long."""
    driver = driver_for(process_engine)
    pid = process_engine._proc.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        for i in range(400):  # about 400 x 2 KB pickled: far over the pipe's buffer
            add(driver, request(f"r{i}", "x" * 2000, max_tokens=1))
        assert time.monotonic() - t0 < 5.0
        await asyncio.sleep(0.3)
        assert driver.stalled_s() >= 0.3  # the watchdog sees a stalled engine
    finally:
        os.kill(pid, signal.SIGCONT)
    seen = Seen()
    await run_until_idle(driver, seen, timeout_s=60)
    assert len(seen.final) == 400 and all(isinstance(seen.terminal(f"r{i}"), Done) for i in range(400))
