"""The scheduler alone, driven with hand-made model outputs (no torch)."""

from __future__ import annotations

import random

from worker.engine.scheduler import Phase, PrefillChunk, Schedule, Scheduler, SchedulerConfig


def cfg(**kw: int) -> SchedulerConfig:
    base = {"max_running": 4, "max_batch_tokens": 1000, "prefill_chunk_tokens": 64, "max_model_len": 512}
    base.update(kw)
    return SchedulerConfig(**base)


def run_step(s: Scheduler, plan: Schedule, tokens_per_decode: int = 1) -> list[str]:
    """Pretend the model ran `plan`: prefill chunks done, one token per decoding sequence.
    Returns the ids that reached max_tokens (and finishes them)."""
    done = []
    for c in plan.prefill:
        s.on_prefilled(c)
        if c.last:
            s.on_generated(c.request_id, 1)  # the prefill step samples the first token
    for rid in plan.decode:
        s.on_generated(rid, tokens_per_decode)
    for rid in [*plan.decode, *(c.request_id for c in plan.prefill if c.last)]:
        seq = s.get(rid)
        assert seq is not None
        if seq.generated >= seq.max_tokens:
            s.finish(rid)
            done.append(rid)
    return done


def test_requests_join_between_steps_and_leave_the_step_they_finish() -> None:
    s = Scheduler(cfg())
    s.add("a", prompt_len=10, max_tokens=3)
    p1 = s.schedule(0.0)
    assert p1.admitted == ["a"] and p1.prefill == [PrefillChunk("a", 0, 10, True)] and p1.decode == []
    run_step(s, p1)
    s.add("b", prompt_len=5, max_tokens=2)  # joins while "a" decodes
    p2 = s.schedule(0.0)
    assert p2.decode == ["a"] and p2.admitted == ["b"]
    run_step(s, p2)
    p3 = s.schedule(0.0)
    assert p3.decode == ["a", "b"]
    assert sorted(run_step(s, p3)) == ["a", "b"]  # a: 1 + 2 tokens, b: 1 + 1 token
    assert s.num_running == 0 and not s.has_unfinished() and s.reserved_tokens == 0


def test_max_running_bounds_the_batch_and_a_finish_admits_the_next() -> None:
    s = Scheduler(cfg(max_running=2))
    for rid in "abc":
        s.add(rid, prompt_len=4, max_tokens=2)
    p = s.schedule(0.0)
    assert p.admitted == ["a", "b"] and s.num_running == 2 and s.num_waiting == 1
    run_step(s, p)
    p = s.schedule(0.0)
    assert p.admitted == [] and p.decode == ["a", "b"]
    assert run_step(s, p) == ["a", "b"]
    p = s.schedule(0.0)
    assert p.admitted == ["c"]


def test_kv_budget_limits_admission_in_fifo_order() -> None:
    # each sequence reserves prompt + max_tokens; the cache pads every row to the longest reservation,
    # so the budget counts running sequences x the longest reservation
    s = Scheduler(cfg(max_batch_tokens=100, max_running=8))
    s.add("a", prompt_len=40, max_tokens=20)  # 60
    s.add("big", prompt_len=30, max_tokens=20)  # 2 x 60 > 100
    s.add("small", prompt_len=5, max_tokens=5)  # 10 would fit on its own, but must not overtake "big"
    p = s.schedule(0.0)
    assert p.admitted == ["a"] and s.reserved_tokens == 60
    run_step(s, p)
    for _ in range(3):
        p = s.schedule(0.0)
        assert p.admitted == []
        run_step(s, p)
    s.finish("a")
    p = s.schedule(0.0)
    assert p.admitted == ["big", "small"] and s.reserved_tokens == 2 * 50
    s.add("tiny", prompt_len=2, max_tokens=2)  # 3 x 50 > 100
    assert s.schedule(0.0).admitted == []


def test_reservation_is_capped_by_the_context_and_an_oversized_request_still_runs_alone() -> None:
    s = Scheduler(cfg(max_batch_tokens=100, max_model_len=80))
    s.add("long", prompt_len=60, max_tokens=1000)
    p = s.schedule(0.0)
    assert p.admitted == ["long"] and s.reserved_tokens == 80
    s2 = Scheduler(cfg(max_batch_tokens=50, max_model_len=512))
    s2.add("huge", prompt_len=40, max_tokens=100)  # 140 > the whole budget: runs once the budget is free
    assert s2.schedule(0.0).admitted == ["huge"] and s2.reserved_tokens == 50


def test_chunked_prefill_bounds_prefill_per_step_and_decode_never_starves() -> None:
    s = Scheduler(cfg(prefill_chunk_tokens=16, max_running=8))
    s.add("short", prompt_len=4, max_tokens=100)
    run_step(s, s.schedule(0.0))
    s.add("long", prompt_len=50, max_tokens=4)
    s.add("after", prompt_len=8, max_tokens=4)
    chunks: list[PrefillChunk] = []
    for step in range(5):
        p = s.schedule(0.0)
        assert "short" in p.decode  # every step decodes the running sequence
        assert sum(c.length for c in p.prefill) <= 16
        chunks += [c for c in p.prefill if c.request_id == "long"]
        run_step(s, p)
        if step < 3:
            assert s.get("after") is not None and s.get("after").phase is Phase.WAITING  # type: ignore[union-attr]
    assert [(c.start, c.length, c.last) for c in chunks] == [
        (0, 16, False),
        (16, 16, False),
        (32, 16, False),
        (48, 2, True),
    ]
    # "after" starts in the step that finishes "long": it waits ceil(tokens ahead / chunk) steps at most
    assert s.get("after") is not None and s.get("after").phase is Phase.DECODE  # type: ignore[union-attr]


def test_cancellation_frees_the_slot_for_the_next_step() -> None:
    s = Scheduler(cfg(max_running=1))
    s.add("a", prompt_len=4, max_tokens=50)
    s.add("b", prompt_len=4, max_tokens=50)
    s.add("c", prompt_len=4, max_tokens=50)
    run_step(s, s.schedule(0.0))
    assert s.finish("c")  # cancel a waiting request
    assert s.finish("a")  # cancel the running one
    assert not s.finish("nope")
    p = s.schedule(0.0)
    assert p.admitted == ["b"] and s.num_waiting == 0


def test_deadlines_expire_waiting_and_running_requests() -> None:
    s = Scheduler(cfg(max_running=1))
    s.add("run", prompt_len=4, max_tokens=50, deadline_s=10.0)
    s.add("wait", prompt_len=4, max_tokens=50, deadline_s=5.0)
    s.add("free", prompt_len=4, max_tokens=50)
    run_step(s, s.schedule(0.0))
    p = s.schedule(6.0)
    assert p.expired == ["wait"] and p.decode == ["run"]
    run_step(s, p)
    p = s.schedule(11.0)
    assert p.expired == ["run"] and p.admitted == ["free"] and p.decode == []


def test_speculation_only_while_the_load_is_small() -> None:
    s = Scheduler(cfg(max_running=8, spec_max_batch_size=2))
    s.add("a", prompt_len=4, max_tokens=50)
    p = s.schedule(0.0)
    assert not p.speculate and not p.prefill_draft  # nothing decodes yet: the draft catches up later
    run_step(s, p)
    s.add("b", prompt_len=4, max_tokens=50)
    p = s.schedule(0.0)
    assert p.speculate and p.prefill_draft  # one decoding, one prefilling
    run_step(s, p)
    s.add("c", prompt_len=4, max_tokens=50)
    p = s.schedule(0.0)
    assert not p.speculate and not p.prefill_draft  # three running
    run_step(s, p)
    s.finish("c")
    assert s.schedule(0.0).speculate  # two again
    # a waiting request counts: a speculative step would delay it
    s2 = Scheduler(cfg(max_running=1, spec_max_batch_size=1))
    s2.add("a", prompt_len=4, max_tokens=50)
    run_step(s2, s2.schedule(0.0))
    assert s2.schedule(0.0).speculate
    s2.add("b", prompt_len=4, max_tokens=50)
    p = s2.schedule(0.0)
    assert p.decode == ["a"] and s2.num_waiting == 1 and not p.speculate
    s0 = Scheduler(cfg(spec_max_batch_size=0))
    s0.add("a", prompt_len=4, max_tokens=50)
    run_step(s0, s0.schedule(0.0))
    assert not s0.schedule(0.0).speculate


def test_random_arrivals_keep_every_invariant_and_everything_finishes() -> None:
    rng = random.Random(7)
    c = cfg(max_running=5, max_batch_tokens=300, prefill_chunk_tokens=32)
    s = Scheduler(c)
    pending = [(f"r{i}", rng.randint(1, 120), rng.randint(1, 40)) for i in range(60)]
    finished: list[str] = []
    admitted: list[str] = []
    for step in range(10_000):
        if pending and rng.random() < 0.5:
            rid, n, m = pending.pop(0)
            s.add(rid, n, m)
        p = s.schedule(float(step))
        admitted += p.admitted
        assert s.num_running <= c.max_running
        assert s.reserved_tokens <= c.max_batch_tokens
        assert sum(ch.length for ch in p.prefill) <= c.prefill_chunk_tokens
        finished += run_step(s, p)
        if not pending and not s.has_unfinished():
            break
    assert sorted(finished) == sorted(f"r{i}" for i in range(60))
    assert admitted == [f"r{i}" for i in range(60)]  # FIFO admission


def test_a_waiting_interactive_request_goes_ahead_of_waiting_batch_ones_fifo_within_each() -> None:
    s = Scheduler(cfg(max_running=1))
    s.add("run", prompt_len=4, max_tokens=1)
    for rid in ("b1", "b2"):
        s.add(rid, prompt_len=4, max_tokens=1, priority=1)
    for rid in ("i1", "i2"):
        s.add(rid, prompt_len=4, max_tokens=1)
    s.add("b3", prompt_len=4, max_tokens=1, priority=1)
    order = []
    while s.has_unfinished():
        p = s.schedule(0.0)
        order += p.admitted
        run_step(s, p)
    assert order == ["run", "i1", "i2", "b1", "b2", "b3"]


def test_an_interactive_request_preempts_the_newest_batch_rows_it_needs_and_they_lose_no_tokens() -> None:
    # two batch requests reserve 2 x 400 of the 1,000-token budget: a third row of any size would not fit
    s = Scheduler(cfg(max_running=4, max_batch_tokens=1000, prefill_chunk_tokens=512))
    s.add("b1", prompt_len=100, max_tokens=300, priority=1)
    s.add("b2", prompt_len=100, max_tokens=300, priority=1)
    generated = {"b1": 0, "b2": 0, "i1": 0}
    for _ in range(5):  # both run and decode a little
        p = s.schedule(0.0)
        for rid in [*p.decode, *(c.request_id for c in p.prefill if c.last)]:
            generated[rid] += 1
        run_step(s, p)
    s.add("i1", prompt_len=50, max_tokens=10)
    p = s.schedule(0.0)
    assert p.preempted == ["b2"] and p.admitted == ["i1"]  # the newest batch row, and only as many as needed
    assert "b2" not in p.decode and s.get("b2").phase is Phase.WAITING  # type: ignore[union-attr]
    b2 = s.get("b2")
    assert b2 is not None and b2.prompt_len == 100 + generated["b2"] and b2.computed == 0  # recomputed, not lost
    while s.has_unfinished():
        for rid in [*p.decode, *(c.request_id for c in p.prefill if c.last)]:
            generated[rid] += 1
        run_step(s, p)
        assert s.reserved_tokens <= 1000
        p = s.schedule(0.0)
    assert generated == {"b1": 300, "b2": 300, "i1": 10}  # every request its max_tokens, the preempted one too


def test_batch_rows_are_not_preempted_when_interactive_rows_hold_the_room() -> None:
    s = Scheduler(cfg(max_running=2, max_batch_tokens=1000))
    s.add("i1", prompt_len=10, max_tokens=10)
    s.add("b1", prompt_len=10, max_tokens=10, priority=1)
    run_step(s, s.schedule(0.0))
    s.add("i2", prompt_len=10, max_tokens=10)
    s.add("i3", prompt_len=10, max_tokens=10)
    p = s.schedule(0.0)
    assert p.preempted == ["b1"] and p.admitted == ["i2"]  # one slot was the batch row's
    p = s.schedule(0.0)
    assert p.preempted == [] and p.admitted == []  # i3 waits for an interactive row: nothing to preempt


def test_random_mixed_lanes_keep_every_invariant_and_every_request_gets_all_its_tokens() -> None:
    rng = random.Random(11)
    c = cfg(max_running=4, max_batch_tokens=400, prefill_chunk_tokens=48)
    s = Scheduler(c)
    pending = [(f"r{i}", rng.randint(1, 100), rng.randint(1, 60), rng.choice((0, 1))) for i in range(80)]
    want = {rid: m for rid, _, m, _ in pending}
    got = dict.fromkeys(want, 0)
    preempted = 0
    for step in range(20_000):
        if pending and rng.random() < 0.4:
            rid, n, m, prio = pending.pop(0)
            s.add(rid, n, m, priority=prio)
        p = s.schedule(float(step))
        preempted += len(p.preempted)
        assert s.num_running <= c.max_running and s.reserved_tokens <= c.max_batch_tokens
        assert not set(p.preempted) & set(p.decode)
        for rid in [*p.decode, *(ch.request_id for ch in p.prefill if ch.last)]:
            got[rid] += 1
        run_step(s, p)
        if not pending and not s.has_unfinished():
            break
    assert got == want and preempted > 0
