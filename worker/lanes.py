"""Priority lanes on the worker: how many batch requests it may take now. Pure: the counts and the time come in.

A worker holds requests from two topics of its model: the interactive lane and the batch lane. Interactive
requests are always taken (up to `max_inflight`); batch requests only into spare capacity: the slots of
`max_running` that neither interactive requests nor a reserve for them (`batch_reserve`, a share of the
slots) take. In an off-peak window the reserve is zero, so batch work may use the whole fleet while no
interactive request needs it. The engine then admits waiting interactive requests ahead of waiting batch
ones (worker/engine/scheduler.py), so a batch request never delays an interactive one in the queue; on the real
engine a running batch row that holds the slot or KV an interactive request needs is preempted (its tokens kept,
recomputed when it is readmitted).
"""

from __future__ import annotations

import math
import time

from fleet.settings import WorkerSettings


def minute_of_day(now_s: float) -> int:
    t = time.gmtime(now_s)
    return t.tm_hour * 60 + t.tm_min


def batch_room(max_running: int, interactive: int, batch: int, reserve: float, off_peak: bool) -> int:
    """Batch requests the worker may take now, holding `interactive` and `batch` requests (uncommitted)."""
    reserved = 0 if off_peak else math.ceil(max_running * reserve)
    return max(0, max_running - reserved - interactive - batch)


class Lanes:
    def __init__(self, max_running: int, settings: WorkerSettings) -> None:
        self._max_running = max_running
        self._settings = settings

    def batch_room(self, interactive: int, batch: int, now_s: float) -> int:
        off_peak = self._settings.off_peak(minute_of_day(now_s))
        return batch_room(self._max_running, interactive, batch, self._settings.batch_reserve, off_peak)
