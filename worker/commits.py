"""Commits: offsets are taken at intake, finished when a request's records have their outcome (in
any order), and committed in order (worker/offsets.py), only once the broker confirmed the commit.

A finish wakes the commit loop, which commits what moved after a short debounce (one commit covers a
burst of finishes); a failed commit is handed out again and retried after `commit_retry_ms`. Only
partitions this worker still owns are committed.

What must wait for the commit waits here (`after_commit`): a finished request's progress record is deleted only
once the broker confirmed a commit past its offset. Deleted before, a worker killed between the two left a
record to be redelivered with nothing to say it was answered, and the next owner answered it again (`expired`
after its `done`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from fleet.settings import WorkerSettings
from worker.offsets import OffsetTracker

log = structlog.get_logger(__name__)


class Commits:
    def __init__(self, consumer: AIOKafkaConsumer, settings: WorkerSettings) -> None:
        self._consumer = consumer
        self._retry_s = settings.commit_retry_ms / 1000
        self.offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self._wake = asyncio.Event()
        self._closing = False
        self._after: dict[TopicPartition, list[tuple[int, Callable[[], object]]]] = {}
        self.committed = 0  # commits the broker confirmed (one per partition moved)
        self.max_uncommitted_seen = 0

    @property
    def uncommitted(self) -> int:
        return self.offsets.unfinished()

    def take(self, tp: TopicPartition, offset: int) -> None:
        self.offsets.take(tp, offset)
        self.max_uncommitted_seen = max(self.max_uncommitted_seen, self.uncommitted)

    def after_commit(self, tp: TopicPartition, offset: int, fn: Callable[[], object]) -> None:
        """Call `fn` once the broker confirmed a commit of `tp` past `offset` (never, if the partition is lost
        first: its next owner meets the record again)."""
        self._after.setdefault(tp, []).append((offset, fn))

    def finish(self, tp: TopicPartition, offset: int) -> None:
        self.offsets.finish(tp, offset)
        self._wake.set()

    def close(self) -> None:
        """`run()` returns at its next turn."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        retry = False
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self._retry_s if retry else None)
            except TimeoutError:
                pass
            self._wake.clear()
            retry = not await self.commit_now()
            await asyncio.sleep(0.01)  # debounce: one commit covers a burst of finishes

    async def commit_now(self, only: set[TopicPartition] | None = None) -> bool:
        """Commit what moved; True when the broker confirmed it (or nothing was due)."""
        offsets = self.offsets.to_commit()
        assigned = self._consumer.assignment()
        for tp in [tp for tp in self._after if tp not in assigned]:  # lost: its next owner meets them again
            del self._after[tp]
        keep = {tp: o for tp, o in offsets.items() if tp in assigned and (only is None or tp in only)}
        self.offsets.failed({tp: o for tp, o in offsets.items() if tp not in keep})  # handed out again later
        if not keep:
            return True
        try:
            await self._consumer.commit(keep)
        except (KafkaError, OSError) as exc:
            self.offsets.failed(keep)
            log.warning("worker.commit_failed", error=repr(exc), offsets={tp.partition: o for tp, o in keep.items()})
            return False
        self.offsets.confirmed(keep)
        self.committed += len(keep)
        for tp, committed in keep.items():
            waiting = self._after.get(tp)
            if waiting:
                due = [fn for o, fn in waiting if o < committed]
                self._after[tp] = [(o, fn) for o, fn in waiting if o >= committed]
                for fn in due:
                    try:
                        fn()
                    except Exception:  # one failing follow-up never stops the commits
                        log.exception("worker.after_commit_failed", partition=tp.partition)
        return True
