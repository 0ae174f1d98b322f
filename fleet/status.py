"""The one reader of the status topic (`llm.fleet.status`): every worker's latest report.

The router's load view, `fleet up`'s readiness and status line, the benchmarks and the tests read worker
status through this. A record that does not decode is logged and skipped (a bad status never stops a
reader).

A report is input like any other (anyone who can write the topic can write one), so a worker is judged by
when its report *arrived*, not by the date it carries: a report dated in the future once kept a dead model
looking alive for as long as its date was ahead, and a worker with a slow clock looked dead. A reader that
replays the topic from its start cannot tell arrival from replay, so there a report counts from the earlier of
its arrival and its date. A reader from now (`from_start=False`) can also read the `recent` latest records
already on the topic, as a replay (the router and `fleet up` do: a router that starts just after a worker's
report, or restarts, knows the live workers at once instead of a heartbeat later, and refuses nothing for want
of one meanwhile). Reports dated more than `FUTURE_TOLERANCE_MS` ahead are ignored, and the reader
keeps at most `MAX_WORKERS` workers (the least recently heard go first), so unique forged ids cannot grow it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from contracts.codec import Codec, DecodeFailure
from contracts.messages import WorkerStatus
from fleet.fetch import Fetch
from fleet.kafka import make_consumer, with_retry
from fleet.settings import Settings

log = structlog.get_logger(__name__)

FUTURE_TOLERANCE_MS = 60_000  # clocks drift; a report dated further ahead than this is not believed at all
MAX_WORKERS = 10_000
MAX_ID_CHARS = 300  # a report whose worker id or model is longer is ignored: the bound counts entries, not bytes
# A worker counts as live for this many of its own recent heartbeat gaps (its clock's, so skew-free): a worker slowed
# by a starved CPU reports late but is not dead, and its requests wait rather than fail. Never longer than the cap
# after its last report, so a dead worker is declared dead within that.
GAP_SLACK = 3.0
MAX_LIVE_WINDOW_MS = 30_000
# what a reader from now replays of the reports already there (`recent`): some thousand workers' last few seconds
RECENT_REPORTS = 4096
GAP_DECAY = 0.9  # the remembered gap is the largest recent one, decaying by this per report


class StatusReader:
    """Reads the status topic from its start (`from_start`) or from now; `latest` maps worker id to its
    newest report. Use as `async with StatusReader(settings) as r:` or `start()`/`stop()`."""

    def __init__(
        self, settings: Settings, *, from_start: bool = True, recent: int = 0, **consumer_overrides: Any
    ) -> None:
        self.settings = settings
        self.latest: OrderedDict[str, WorkerStatus] = OrderedDict()  # least recently heard first
        self.heard_ms: dict[str, float] = {}  # worker id -> when its latest report counts from (ms, this clock)
        self.gap_ms: dict[str, float] = {}  # worker id -> its recent largest gap between reports (its own clock)
        self.ignored = 0  # reports dated too far in the future
        self._from_start = from_start
        self._recent = 0 if from_start else recent
        self._replay_end: dict[TopicPartition, int] = {}  # partition -> the end offset when it was placed
        self._codec = Codec()
        self._consumer = make_consumer(
            settings,
            settings.kafka.topics.status,
            group_id=None,
            auto_offset_reset="earliest" if from_start else "latest",
            **consumer_overrides,
        )
        self._fetch = Fetch(self._consumer, settings, name="status")

    async def start(self, stop: asyncio.Event | None = None) -> None:
        await with_retry("status.start", self._consumer.start, stop=stop)

    async def stop(self) -> None:
        await self._fetch.stop()
        await self._consumer.stop()

    async def __aenter__(self) -> StatusReader:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def poll(self, timeout_ms: int = 0) -> list[WorkerStatus]:
        """The reports that arrived since the last poll (waiting up to `timeout_ms` for the first)."""
        out: list[WorkerStatus] = []
        if self._recent:
            await self._place()
        for tp, records in (await self._fetch.getmany(timeout_ms=timeout_ms)).items():
            replay_end = self._replay_end.get(tp, -1)
            for r in records:
                try:
                    st = self._codec.decode_status(r.value or b"")
                except DecodeFailure as exc:
                    log.warning("status.bad_record", reason=exc.message[:200], offset=r.offset)
                    continue
                now_ms = time.time() * 1000
                if st.ts_ms > now_ms + FUTURE_TOLERANCE_MS:
                    self.ignored += 1
                    log.warning("status.dated_in_the_future", worker=st.worker_id[:200], ahead_ms=st.ts_ms - now_ms)
                    continue
                if len(st.worker_id) > MAX_ID_CHARS or len(st.model) > MAX_ID_CHARS:
                    self.ignored += 1  # a worker's id is `{model}-{host}-{pid}-{suffix}`: a megabyte one is nobody's
                    log.warning("status.id_too_long", chars=len(st.worker_id), offset=r.offset)
                    continue
                prev = self.latest.get(st.worker_id)
                heard_before = self.heard_ms.get(st.worker_id)
                if prev is not None and heard_before is not None and prev.ts_ms < st.ts_ms <= now_ms + 2_000:
                    # the gap as both clocks saw it: a report dated ahead (forged, or a clock running fast) or a
                    # burst read late by a starved reader widens nothing on its own
                    gap = min(float(st.ts_ms - prev.ts_ms), now_ms - heard_before, MAX_LIVE_WINDOW_MS)
                    self.gap_ms[st.worker_id] = max(gap, self.gap_ms.get(st.worker_id, 0.0) * GAP_DECAY)
                self.latest[st.worker_id] = st
                self.latest.move_to_end(st.worker_id)
                replayed = self._from_start or r.offset < replay_end
                self.heard_ms[st.worker_id] = min(now_ms, st.ts_ms) if replayed else now_ms
                while len(self.latest) > MAX_WORKERS:
                    gone, _ = self.latest.popitem(last=False)
                    self.heard_ms.pop(gone, None)
                    self.gap_ms.pop(gone, None)
                out.append(st)
        return out

    async def _place(self) -> None:
        """Each newly assigned partition starts `recent` records before its end; those count as replayed."""
        new = [tp for tp in self._consumer.assignment() if tp not in self._replay_end]
        if not new:
            return
        try:
            ends = await self._consumer.end_offsets(new)
            begins = await self._consumer.beginning_offsets(new)
        except KafkaError as exc:  # the broker does not answer now: placed on a later poll
            log.warning("status.place_failed", error=repr(exc)[:200])
            return
        for tp in new:
            end = ends.get(tp)
            if end is not None:
                self._consumer.seek(tp, max(begins.get(tp, 0), end - self._recent))
            self._replay_end[tp] = end if end is not None else -1

    def fresh(self, within_ms: float, *, model: str | None = None, now_ms: float | None = None) -> list[WorkerStatus]:
        """The latest report of each worker (of `model`) heard within the last `within_ms`, or within a few of its
        own recent heartbeat gaps where those grew (a slowed worker, not a dead one; at most MAX_LIVE_WINDOW_MS)."""
        now_ms = time.time() * 1000 if now_ms is None else now_ms
        heard, gaps = self.heard_ms, self.gap_ms
        return [
            st
            for wid, st in self.latest.items()
            if now_ms - heard.get(wid, 0) < max(within_ms, min(MAX_LIVE_WINDOW_MS, GAP_SLACK * gaps.get(wid, 0.0)))
            and (model is None or st.model == model)
        ]

    async def first(self, match: Callable[[WorkerStatus], bool], timeout_s: float) -> WorkerStatus:
        """The first report from now on that `match`es; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while True:
                for st in await self.poll(timeout_ms=100):
                    if match(st):
                        return st


async def wait_for_workers(
    settings: Settings,
    models: list[str],
    timeout_s: float,
    *,
    count: int = 1,
    within_ms: float | None = None,
    check: Callable[[], None] | None = None,
) -> dict[str, WorkerStatus]:
    """Until `count` distinct workers of every model in `models` have reported (within the last
    `within_ms` if given), or `timeout_s` passes; returns the latest report per model seen so far.
    `check` is called between polls (to fail fast when a process died)."""

    def ready() -> dict[str, list[WorkerStatus]]:
        window = float("inf") if within_ms is None else within_ms
        return {m: reader.fresh(window, model=m) for m in models}

    async with StatusReader(settings) as reader:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(len(sts) >= count for sts in ready().values()):
                break
            if check is not None:
                check()
            await reader.poll(timeout_ms=200)
        return {m: max(sts, key=lambda st: st.ts_ms) for m, sts in ready().items() if sts}
