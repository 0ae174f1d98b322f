"""Resume without Kafka: a request's progress record taken mid-stream lets a second driver (another worker)
continue it under the same run id, seq going on, with the text of an uninterrupted run; the record's codec,
the view that reads the topic, and the gate that holds each chunk until its record is durable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from contracts.messages import Chunk, Done, Progress, Request
from fleet.settings import ModelSettings
from tests.worker.test_driver import LATENCY, TOK, Seen, driver_for, request, run_until_idle
from worker.driver import EngineDriver
from worker.engine import build_engine
from worker.engine.api import Engine
from worker.engine.simulated import SimulatedEngine
from worker.inputs import prompt_token_ids
from worker.outbox import Delivery
from worker.progress import ProgressGate, ProgressView, decode_progress, encode_progress, progress_key
from worker.state import RequestState


def start(driver: EngineDriver, req: Request, **kw: object) -> RequestState:
    ids = prompt_token_ids(req, driver.tokenizer, driver.max_model_len)
    return driver.add(req, ids, intake_s=time.time(), **kw)  # type: ignore[arg-type]


async def clean_run(engine: Engine, tok: object, req: Request, max_len: int = 4096) -> tuple[str, Done, list[Chunk]]:
    d, seen = driver_for(engine, tok, max_model_len=max_len), Seen()
    start(d, req)
    await run_until_idle(d, seen)
    done = seen.terminal(req.id)
    assert isinstance(done, Done)
    chunks = [c for c in seen.chunks[req.id] + seen.final[req.id] if isinstance(c, Chunk)]
    return seen.text(req.id), done, chunks


async def interrupted_run(
    first: Engine, second: Engine, tok: object, req: Request, after_chunks: int, max_len: int = 4096
) -> tuple[list[Chunk], Done, Progress]:
    """Run on `first` until `after_chunks` chunks went out, take the record the worker would have written with the
    last of them, drop the first driver (a dead worker), and go on with a second driver from that record."""
    d1, seen1 = driver_for(first, tok, max_model_len=max_len), Seen()
    state = start(d1, req)
    while len(seen1.chunks.get(req.id, [])) < after_chunks:
        seen1.take(await asyncio.wait_for(d1.step(), 10))
        assert req.id not in seen1.final, "finished before the interruption"
    record = state.progress(1, "m")
    sent = seen1.chunks[req.id]
    d2, seen2 = driver_for(second, tok, max_model_len=max_len), Seen()
    resumed = start(d2, req, run_id=record.run_id, progress=record, deaths=record.attempts)
    assert resumed.run_id == state.run_id and resumed.resumed_tokens == len(record.token_ids)
    await run_until_idle(d2, seen2)
    done = seen2.terminal(req.id)
    assert isinstance(done, Done)
    later = [c for c in seen2.chunks[req.id] + seen2.final[req.id] if isinstance(c, Chunk)]
    return sent + later, done, record


def assert_continuous(chunks: list[Chunk], run_id: str) -> None:
    assert [c.seq for c in chunks] == list(range(len(chunks))), "seq goes on from the record"
    assert {c.run_id for c in chunks} == {run_id}


async def test_a_simulated_request_resumes_where_it_stopped() -> None:
    req = request("r", "hello resumable world", max_tokens=40)
    text, done, _ = await clean_run(SimulatedEngine(tokens_per_s=10_000), TOK, req)
    sim = SimulatedEngine(tokens_per_s=10_000)
    chunks, done2, record = await interrupted_run(sim, SimulatedEngine(tokens_per_s=10_000), TOK, req, 7)
    assert_continuous(chunks, record.run_id)
    assert "".join(c.text for c in chunks) == text == done2.text
    assert done2.usage == done.usage, "prompt and completion tokens as if uninterrupted"
    assert done2.seq == chunks[-1].seq + 1


async def test_a_greedy_model_resumed_from_prompt_plus_tokens_writes_the_same_text(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """A real checkpoint: the new owner prefills prompt plus the tokens so far and goes on; greedy output equals
    the uninterrupted run's."""
    import torch

    threads = torch.get_num_threads()
    try:
        model = ModelSettings(name="t", path=str(tiny_checkpoint), torch_threads=1)
        e1, tok, max_len = build_engine(model, tmp_path)
        req = request("g", "the cat sat on", max_tokens=40)
        text, done, clean_chunks = await clean_run(e1, tok, req, max_len)
        assert len(clean_chunks) > 10
        e2, _, _ = build_engine(model, tmp_path)
        for cut in (1, 6):
            chunks, done2, record = await interrupted_run(e1, e2, tok, req, cut, max_len)
            assert_continuous(chunks, record.run_id)
            assert "".join(c.text for c in chunks) == text == done2.text
            assert done2.usage == done.usage
    finally:
        torch.set_num_threads(threads)


async def test_text_the_earlier_owner_generated_but_had_not_sent_goes_out_with_the_next_chunk() -> None:
    """A record can cover tokens whose text was still in the earlier owner's coalescer (never sent as a chunk).
    The new owner replays those tokens: their text must go out as the next chunk (the first output of a fresh
    coalescer goes at once, and it was dropped: the engine-death test's client saw a hole in the middle)."""
    req = request("h", "hello resumable world", max_tokens=40)
    text, _, _ = await clean_run(SimulatedEngine(tokens_per_s=10_000), TOK, req)
    d1, seen1 = driver_for(SimulatedEngine(tokens_per_s=10_000)), Seen()
    state = start(d1, req)
    while len(seen1.chunks.get(req.id, [])) < 6:
        seen1.take(await asyncio.wait_for(d1.step(), 10))
    sent = seen1.chunks[req.id]
    full = state.progress(1, "m")
    # as written while the last chunk's text was still held back: its tokens counted, its text not sent
    held = msgspec.structs.replace(full, seq=full.seq - 1, text=full.text[: -len(sent[-1].text)], resend=[])
    d2, seen2 = driver_for(SimulatedEngine(tokens_per_s=10_000)), Seen()
    resumed = start(d2, req, run_id=held.run_id, progress=held)
    assert resumed.resumed_tokens == len(held.token_ids)
    await run_until_idle(d2, seen2)
    later = [c for c in seen2.chunks[req.id] + seen2.final[req.id] if isinstance(c, Chunk)]
    chunks = sent[:-1] + later
    assert_continuous(chunks, held.run_id)
    done = seen2.terminal(req.id)
    assert isinstance(done, Done) and "".join(c.text for c in chunks) == text == done.text


async def test_every_chunk_not_seen_delivered_is_sent_again_by_the_new_owner() -> None:
    """A worker whose engine died may have lost more than the chunk its last record covers (several records
    durable, their chunks still queued): the record lists every chunk not confirmed delivered and the new
    owner sends each of them again, same seq and text, so the client's text has no hole."""
    req = request("u", "hello resumable world", max_tokens=40)
    d1, seen1 = driver_for(SimulatedEngine(tokens_per_s=10_000)), Seen()
    state = start(d1, req)
    while len(seen1.chunks.get(req.id, [])) < 7:
        seen1.take(await asyncio.wait_for(d1.step(), 10))
    sent = seen1.chunks[req.id]
    for c in sent[:4]:  # chunks 0-3 delivered; 4 confirmed out of order; 5 and 6 lost with the worker
        state.confirm(c.seq)
    state.confirm(sent[6].seq + 100)  # a seq it never sent: ignored
    assert list(state.unconfirmed) == [4, 5, 6]
    state.confirm(5)
    assert list(state.unconfirmed) == [4, 5, 6], "held until the older chunk 4 is confirmed"
    state.confirm(4)
    assert list(state.unconfirmed) == [6]
    state.unconfirmed = {4: len(sent[4].text), 5: len(sent[5].text), 6: len(sent[6].text)}  # none of 4-6 arrived
    record = decode_progress(encode_progress(state.progress(1, "m")))
    assert record is not None and record.resend == [len(c.text) for c in sent[4:7]]
    resumed = start(driver_for(SimulatedEngine(tokens_per_s=10_000)), req, run_id=record.run_id, progress=record)
    again = resumed.resend_chunks(record.text)
    assert again == sent[4:7], "the lost chunks, with their seq and text"
    assert resumed.resend_chunks("") == [], "a record whose text cannot hold them sends nothing"
    for bad in ([1] * (record.seq + 1), [0], [-3, 5]):  # more chunks than seqs, empty or negative lengths
        odd = msgspec.structs.replace(record, resend=bad)
        state = start(driver_for(SimulatedEngine(tokens_per_s=10_000)), req, run_id=odd.run_id, progress=odd)
        assert state.resumed_tokens == len(odd.token_ids) and state.resend_chunks(odd.text) == []


async def test_a_copy_of_a_running_request_never_takes_over_the_live_run() -> None:
    """A peer that bypasses the router may send the same request twice (two partitions); the second copy can
    find the first one's own progress record. It runs on its own under a new run id: the live run keeps its
    state (and so its offset gets its outcome), both end with `done`."""
    req = request("dup", "hello twice", max_tokens=12)
    d, seen = driver_for(SimulatedEngine(tokens_per_s=10_000)), Seen()
    first = start(d, req)
    while not seen.chunks.get(req.id):
        seen.take(await asyncio.wait_for(d.step(), 10))
    record = first.progress(1, "m")
    second = start(d, req, run_id=record.run_id, progress=record, deaths=1)
    assert second.run_id != first.run_id and second.resumed_tokens == 0
    assert d.states[first.run_id] is first and d.by_request[req.id] == {first.run_id, second.run_id}
    await run_until_idle(d, seen)
    assert first.finished and second.finished and not d.states


async def test_a_record_written_with_the_final_events_only_sends_them_again() -> None:
    req = request("f", "short", max_tokens=6)
    d, seen = driver_for(SimulatedEngine(tokens_per_s=10_000)), Seen()
    state = start(d, req)
    await run_until_idle(d, seen)
    done = seen.terminal("f")
    assert isinstance(done, Done)
    record = state.progress(1, "m", seen.finished["f"])
    d2 = driver_for(SimulatedEngine(tokens_per_s=10_000))
    again = start(d2, req, run_id=record.run_id, progress=record, deaths=1)
    assert not again.in_engine, "nothing left for an engine to do"
    upd = d2.finish_resumed(again)
    (ev,) = upd.requests
    assert [type(e) for e in ev.final] == [Done], "the tail chunk was in the record: only `done` is new"
    final = ev.final[-1]
    assert isinstance(final, Done) and final.text == done.text and final.seq == done.seq
    assert final.run_id == done.run_id and not d2.states


async def test_a_record_that_does_not_replay_starts_afresh() -> None:
    req = request("x", "abc", max_tokens=10)
    bad = Progress(id="x", model="m", run_id="old", seq=3, token_ids=[ord("z")], text="not this", attempts=1)
    d = driver_for(SimulatedEngine(tokens_per_s=10_000))
    state = start(d, req, run_id="old", progress=bad, deaths=1)
    assert state.run_id != "old" and state.resumed_tokens == 0 and state.seq == 0
    assert state.started_attempts == 2, "still counted: this worker started it"


async def test_a_request_that_killed_workers_runs_alone() -> None:
    """From `suspect_alone_after` deaths on, a request waits until the engine holds nothing else, and what comes
    after it waits until it finished."""
    eng = SimulatedEngine(tokens_per_s=10_000)
    d = EngineDriver(eng, TOK, model="m", max_model_len=4096, latency=LATENCY, max_attempts=3, suspect_alone_after=2)
    seen = Seen()
    start(d, request("a", "first", max_tokens=5))
    suspect = start(d, request("s", "suspect", max_tokens=5), deaths=2)
    start(d, request("b", "later", max_tokens=5))
    assert not suspect.in_engine
    running_with_suspect: set[str] = set()
    while d.states:
        seen.take(await asyncio.wait_for(d.step(), 10))
        if suspect.in_engine and suspect.run_id in d.states:
            running_with_suspect |= {s.request.id for s in d.states.values() if s.in_engine}
    assert running_with_suspect == {"s"}
    assert set(seen.finished) == {"a", "s", "b"}


def test_progress_records_round_trip_and_the_view_keeps_this_models_live_ones() -> None:
    p = Progress(id="r1", model="m", run_id="run", seq=3, token_ids=[1, 2, 3], text="abc", attempts=2, tenant="t")
    assert decode_progress(encode_progress(p)) == p
    assert decode_progress(b"\xc1garbage") is None
    from fleet.settings import Settings

    view = ProgressView(Settings(), "m")
    view.apply(progress_key("t", "r1"), encode_progress(p))
    view.apply(progress_key(None, "r2"), encode_progress(Progress(id="r2", model="other", run_id="x")))
    view.apply(progress_key(None, "r3"), b"garbage")
    assert view.get("r1", "t") == p
    assert view.get("r1", None) is None, "another tenant's request under the same id"
    assert view.get("r2", None) is None and view.get("r3", None) is None
    view.apply(progress_key("t", "r1"), None)  # the tombstone
    assert view.get("r1", "t") is None


class _Outbox:
    """Records what is submitted; each submit's future is resolved by the test."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []
        self.futures: list[asyncio.Future[Delivery]] = []

    def submit(self, topic: str, value: bytes | None, **_: object) -> asyncio.Future[Delivery]:
        self.sent.append((topic, value))
        fut: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return fut


async def test_the_gate_sends_each_runs_events_after_their_record_in_order() -> None:
    box = _Outbox()
    gate = ProgressGate(box, "llm.progress")  # type: ignore[arg-type]
    order: list[str] = []

    def send(name: str) -> asyncio.Future[Delivery]:
        order.append(name)
        fut: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        fut.set_result(Delivery.DELIVERED)
        return fut

    rec = Progress(id="r", model="m", run_id="run")
    first = gate.send_after(rec, [lambda: send("c0")])
    second = gate.send_after(rec, [lambda: send("c1"), lambda: send("done")])
    assert order == [] and [t for t, _ in box.sent] == ["llm.progress", "llm.progress"]
    box.futures[1].set_result(Delivery.DELIVERED)  # the later record acknowledged first: nothing may overtake
    await asyncio.sleep(0)
    assert order == []
    box.futures[0].set_result(Delivery.DELIVERED)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == ["c0", "c1", "done"]
    assert [f.result() for f in first + second] == [Delivery.DELIVERED] * 3
    lost = gate.send_after(rec, [lambda: send("never")])
    box.futures[2].cancel()  # the worker closed before the record went out: the chunk never goes
    await asyncio.sleep(0)
    assert order[-1] == "done" and lost[0].cancelled()


async def test_a_finished_requests_record_is_deleted_with_a_tombstone() -> None:
    box = _Outbox()
    ProgressGate(box, "llm.progress").delete(None, "r")  # type: ignore[arg-type]
    assert box.sent == [("llm.progress", None)]


async def test_a_run_is_charged_only_when_it_enters_the_engine() -> None:
    """`before_launch` sees a run when it is about to enter the engine (the worker writes its start record then),
    and the run enters only when let in: a suspect waiting for the engine to empty is not charged meanwhile."""
    eng = SimulatedEngine(tokens_per_s=10_000)
    charged: list[str] = []
    pending: list[tuple[str, Callable[[], None]]] = []

    def before_launch(state: RequestState, enter: Callable[[], None]) -> None:
        charged.append(state.request.id)
        pending.append((state.request.id, enter))

    d = EngineDriver(eng, TOK, model="m", max_model_len=4096, latency=LATENCY, max_attempts=3, suspect_alone_after=2)
    d.before_launch = before_launch
    seen = Seen()
    a = start(d, request("a", "first", max_tokens=3))
    start(d, request("s", "suspect", max_tokens=3), deaths=2)
    assert charged == ["a"] and not a.in_engine, "not in the engine before its start is durable"
    pending.pop()[1]()
    assert a.in_engine
    while "a" not in seen.finished:
        seen.take(await asyncio.wait_for(d.step(), 10))
    step = asyncio.ensure_future(d.step())  # the suspect's turn: charged now, the driver waits for its record
    await asyncio.sleep(0.01)
    assert charged == ["a", "s"] and not step.done()
    pending.pop()[1]()
    seen.take(await asyncio.wait_for(step, 10))
    await run_until_idle(d, seen)
    assert set(seen.finished) == {"a", "s"}


def test_two_tenants_requests_with_one_id_keep_their_own_records_bound_to_their_intake_record() -> None:
    from fleet.settings import Settings

    view = ProgressView(Settings(), "m")
    a = Progress(id="req-1", model="m", run_id="ra", text="alpha's", tenant="alpha", source="llm.requests.m:0:7")
    b = Progress(id="req-1", model="m", run_id="rb", text="beta's", tenant="beta", source="llm.requests.m:1:3")
    view.apply(progress_key("alpha", "req-1"), encode_progress(a))
    view.apply(progress_key("beta", "req-1"), encode_progress(b))
    assert view.get("req-1", "alpha", "llm.requests.m:0:7") == a and view.get("req-1", "beta") == b
    view.apply(progress_key("beta", "req-1"), None)  # beta's request ended: alpha's record stays
    assert view.get("req-1", "alpha") == a and view.get("req-1", "beta") is None
    # the same tenant and id on another record (a re-send forwarded anew): not a redelivery, nothing to resume
    assert view.get("req-1", "alpha", "llm.requests.m:0:9") is None
    # a record whose key names another tenant than its body, or an older release's bare-id key: passed over
    view.apply(progress_key("beta", "req-1"), encode_progress(a))
    view.apply(b"req-1", encode_progress(b))
    assert view.get("req-1", "beta") is None
