"""The watchdog: the worker's own deadline check and engine progress.

Every 0.2 s: a request past its deadline by more than `deadline_grace_ms` is answered `expired`
(the engine checks deadlines every step, so such a request is stuck or far behind); an engine that
holds work and has not stepped for `engine_watchdog_s` is hung: it is killed and the worker exits
non-zero, leaving its requests uncommitted for another worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from fleet.settings import WorkerSettings
from worker.driver import EngineDriver, Update

log = structlog.get_logger(__name__)


async def watch(
    settings: WorkerSettings,
    driver: EngineDriver,
    sink: Callable[[Update], None],
    die: Callable[[str], None],
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        upd = driver.expire_overdue(time.time(), settings.deadline_grace_ms)
        if upd:
            sink(upd)
        stalled = driver.stalled_s()
        if stalled > settings.engine_watchdog_s:
            log.error(
                "worker.engine_stalled",
                stalled_s=round(stalled, 1),
                watchdog_s=settings.engine_watchdog_s,
                in_flight=len(driver.states),
            )
            driver.counts.watchdog_trips += 1
            kill = getattr(driver.engine, "kill", None)
            if callable(kill):
                kill()
            die(f"engine made no progress for {stalled:.0f} s")
            return
        await asyncio.sleep(0.2)
