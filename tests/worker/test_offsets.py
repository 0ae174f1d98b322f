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


def test_offsets_count_as_committed_only_when_confirmed_and_a_failed_commit_is_handed_out_again() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    t.take("p0", 0)
    t.finish("p0", 0)
    out = t.to_commit()
    assert out == {"p0": 1} and t.committed("p0") is None and t.uncommitted_partitions() == ["p0"]
    t.failed(out)
    assert t.to_commit() == {"p0": 1}  # retried
    t.confirmed({"p0": 1})
    assert t.committed("p0") == 1 and t.uncommitted_partitions() == [] and t.to_commit() == {}
