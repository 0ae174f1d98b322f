"""Rebalance handling: what the worker does when the group moves partitions.

Revoked: stop taking from them, let their requests finish within `revoke_grace_s`, commit what
finished (a failed commit is retried), and abandon the rest uncommitted for the new owner.
Assigned: a rebalance resumes every partition, so backpressure is applied again.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition

from fleet.settings import WorkerSettings
from worker.commits import Commits
from worker.driver import EngineDriver
from worker.intake import Intake
from worker.progress import ProgressView
from worker.replies import Replies
from worker.state import RequestState

log = structlog.get_logger(__name__)


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        settings: WorkerSettings,
        intake: Intake,
        driver: EngineDriver,
        commits: Commits,
        *,
        replies: Replies | None = None,
        progress: ProgressView | None = None,
    ) -> None:
        self._settings = settings
        self._replies = replies
        self._progress = progress
        self._intake = intake
        self._driver = driver
        self._commits = commits
        self.joined = False  # an assignment came (perhaps empty): the consumer is in its group (readiness)

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("worker.assigned", partitions=sorted(tp.partition for tp in assigned))
        self.joined = True
        self._intake.reapply(set(assigned))
        if self._progress is not None and assigned:
            # requests of these partitions may be another worker's, half done: intake reads their progress first
            self._intake.catch_up_first(
                asyncio.ensure_future(self._progress.catch_up(self._settings.progress_catch_up_s))
            )

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Stop taking from revoked partitions, let their requests finish within the grace,
        commit what finished (retrying a failed commit), abandon the rest uncommitted for the new owner."""
        if not revoked:
            return
        offsets = self._commits.offsets
        held = [s for s in self._driver.states.values() if s.partition in revoked]
        log.info("worker.revoked", partitions=sorted(tp.partition for tp in revoked), in_flight=len(held))
        deadline = time.monotonic() + self._settings.revoke_grace_s
        while any(offsets.unfinished(tp) for tp in revoked) and time.monotonic() < deadline:  # noqa: ASYNC110 - a bounded poll, not a wait for one event
            await asyncio.sleep(0.02)
        for attempt in range(3):
            if await self._commits.commit_now(only=revoked) or not any(
                tp in revoked for tp in offsets.uncommitted_partitions()
            ):
                break
            log.warning("worker.revoke_commit_retry", attempt=attempt + 1)
            await asyncio.sleep(self._settings.commit_retry_ms / 1000)
        # abandoned first, then released: a run still going wrote chunk records (charged) after its release record,
        # and the next owner read the last of them and counted a partition let go alive as a death
        let_go = [s for s in self._driver.states.values() if s.partition in revoked]
        self._driver.abandon_where(lambda s: s.partition in revoked)
        await release(self._replies, let_go)
        for tp in revoked:
            offsets.forget(tp)


# The group waits for the revoke callback, so the next owner reads the progress only after this wait: long enough
# for the uncharged records to land on a loaded machine (1 s was not: the full suite saw a partition handed over
# alive charged as a death), short next to the revoke grace already spent
RELEASE_WAIT_S = 5.0


async def release(replies: Replies | None, states: list[RequestState], timeout_s: float = RELEASE_WAIT_S) -> None:
    """Requests let go alive: their progress, uncharged, for the next owner (waited for, up to `timeout_s`)."""
    if replies is None or not states:
        return
    futs = replies.release(states)
    if futs:
        await asyncio.wait(futs, timeout=timeout_s)
