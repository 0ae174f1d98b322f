from __future__ import annotations

from router.policies.overload import LoadTracker


def test_backlog_bound_refuses() -> None:
    t = LoadTracker(max_backlog=10)
    t.update("m", end_total=10, committed_total=0, now_s=0)
    assert t.refusal("m", None, 0) is not None
    t.update("m", end_total=10, committed_total=5, now_s=1)
    assert t.refusal("m", None, 0) is None


def test_deadline_versus_drain_rate() -> None:
    t = LoadTracker(max_backlog=1000)
    t.update("m", end_total=100, committed_total=0, now_s=0)
    t.update("m", end_total=110, committed_total=10, now_s=1)  # 10 finished in 1 s; 100 waiting -> ~10 s
    assert t.refusal("m", deadline_ms=5_000, now_ms=0) is not None
    assert t.refusal("m", deadline_ms=20_000, now_ms=0) is None
    assert t.refusal("m", deadline_ms=None, now_ms=0) is None
    assert t.refusal("unknown", deadline_ms=1, now_ms=0) is None


def test_requests_the_workers_already_hold_are_not_queued() -> None:
    t = LoadTracker(max_backlog=1000)
    t.update("m", end_total=20, committed_total=0, now_s=0)
    t.update("m", end_total=20, committed_total=0, now_s=10)  # a stall: commits stopped
    assert t.refusal("m", deadline_ms=1_000, now_ms=0, capacity=24) is None


def test_requests_routed_between_polls_count_towards_the_backlog() -> None:
    t = LoadTracker(max_backlog=3)
    t.update("m", end_total=0, committed_total=0, now_s=0)
    for _ in range(3):
        assert t.refusal("m", None, 0) is None
        t.routed("m")
    assert t.refusal("m", None, 0) is not None
