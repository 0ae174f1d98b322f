"""worker/commits.py with a scripted consumer (no broker): what waits for a commit (a finished request's progress
tombstone) runs only once the broker confirmed a commit past its offset; a failed commit runs nothing, a lost
partition's follow-ups are dropped (its next owner meets the records again), and one that raises stops nothing."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from fleet.settings import WorkerSettings
from worker.commits import Commits

TP, OTHER = TopicPartition("llm.requests.m", 0), TopicPartition("llm.requests.m", 1)


class ScriptedConsumer:
    def __init__(self) -> None:
        self.assigned = {TP, OTHER}
        self.fail_next = False
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise KafkaTimeoutError()
        self.commits.append(dict(offsets))


async def test_a_follow_up_runs_once_a_confirmed_commit_passes_its_offset_and_never_before() -> None:
    consumer = ScriptedConsumer()
    commits = Commits(consumer, WorkerSettings())  # type: ignore[arg-type]
    ran: list[str] = []
    for o in (0, 1, 2):
        commits.take(TP, o)
    commits.after_commit(TP, 1, lambda: ran.append("r1"))
    commits.finish(TP, 1)  # 0 still unfinished: nothing can be committed past 1
    assert await commits.commit_now() and ran == []
    commits.finish(TP, 0)
    consumer.fail_next = True
    assert not await commits.commit_now() and ran == []  # the commit failed: the tombstone waits
    assert await commits.commit_now() and consumer.commits[-1] == {TP: 2} and ran == ["r1"]


async def test_a_lost_partitions_follow_ups_are_dropped_and_one_that_raises_stops_nothing() -> None:
    consumer = ScriptedConsumer()
    commits = Commits(consumer, WorkerSettings())  # type: ignore[arg-type]
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("a follow-up that fails")

    for tp in (TP, OTHER):
        commits.take(tp, 0)
    commits.after_commit(TP, 0, boom)
    commits.after_commit(TP, 0, lambda: ran.append("after boom"))
    commits.after_commit(OTHER, 0, lambda: ran.append("lost"))
    consumer.assigned = {TP}  # OTHER was revoked
    for tp in (TP, OTHER):
        commits.finish(tp, 0)
    assert await commits.commit_now()
    assert ran == ["after boom"] and consumer.commits == [{TP: 1}]
    consumer.assigned = {TP, OTHER}  # it comes back: the dropped follow-up does not run for the new owner's commit
    commits.take(OTHER, 1)
    commits.finish(OTHER, 1)
    assert await commits.commit_now() and ran == ["after boom"]
