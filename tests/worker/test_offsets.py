from __future__ import annotations

from worker.offsets import OffsetTracker


def test_commits_only_up_to_the_lowest_unfinished() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    for o in (10, 11, 12):
        t.take("p0", o)
    t.finish("p0", 12)
    assert t.to_commit() == {"p0": 10}
    t.finish("p0", 11)
    assert t.to_commit() == {}  # unchanged: 10 still runs
    t.finish("p0", 10)
    assert t.to_commit() == {"p0": 13}
    assert t.unfinished() == 0


def test_partitions_are_independent_and_forget_abandons() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    t.take("a", 0)
    t.take("b", 5)
    t.finish("b", 5)
    assert t.to_commit() == {"a": 0, "b": 6}
    t.forget("a")
    assert t.unfinished() == 0 and t.partitions() == ["b"]
