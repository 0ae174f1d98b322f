"""router/ledger.py on hand-made offsets: what a redo skips, what it still sends, how far a partition may be
committed with held records, and what a commit forgets."""

from __future__ import annotations

from router.ledger import Ledger, PartitionLedger


def test_a_reached_record_is_settled_and_a_partly_sent_one_keeps_its_missing_sends() -> None:
    part = PartitionLedger()
    part.fetched(5)
    part.reached(0)
    part.partly(1, "decision", ["reply"])
    assert part.is_settled(0) and not part.is_settled(1) and not part.is_settled(2)
    assert part.unfinished[1].decision == "decision" and part.unfinished[1].missing == ["reply"]
    part.reached(1)  # the redo sent what was missing
    assert part.is_settled(1) and 1 not in part.unfinished


def test_the_commit_point_stops_before_the_first_held_record() -> None:
    part = PartitionLedger()
    assert part.commit_point(10) == 10
    part.hold(7, "rec7")
    part.hold(4, "rec4")
    assert part.is_settled(4)  # a redo does not decide a held record again
    assert part.commit_point(10) == 4 and part.commit_point(3) == 3
    part.release(4)
    assert part.commit_point(10) == 7
    part.release(7)
    part.release(7)  # twice: nothing to release
    assert part.commit_point(10) == 10


def test_a_commit_forgets_what_lies_before_it_and_counts_the_completed_records() -> None:
    part = PartitionLedger()
    for o in (0, 1, 2, 5):
        part.reached(o)
    part.partly(3, "d", ["dlq"])
    assert part.attempt(3) == 1 and part.attempt(3) == 2 and part.attempt(6) == 1
    assert part.committed(4) == 3  # 0, 1 and 2
    assert part.completed == {5} and not part.unfinished and part.attempts == {6: 1}
    assert part.committed(4) == 0  # the same commit again covers nothing new


def test_partitions_are_kept_apart_and_a_revoked_one_is_forgotten() -> None:
    ledger: Ledger[str] = Ledger()
    ledger("a").hold(3, "r")
    ledger("b").reached(0)
    assert ledger.holding and ledger.held("a") == {3: "r"} and ledger.held("c") == {}
    ledger.forget("a")
    assert not ledger.holding and ledger.get("a") is None and ledger("b").is_settled(0)
    ledger.forget("nothing")  # forgetting a partition never held is fine
