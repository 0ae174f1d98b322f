"""Status and health: a `WorkerStatus` record on the status topic every `status_interval_ms` (the
router's view of load and capacity) and the health file beside it (`fleet.health.beat`), both
from progress: ready while intake polls and the engine steps whenever it holds work.

The beat also notices an idle engine process that died (`stats()` raises `EngineDied`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from contracts.codec import Codec
from contracts.messages import WorkerStatus
from fleet.health import beat
from fleet.metrics import Probes
from fleet.settings import ModelSettings, Settings
from worker.commits import Commits
from worker.driver import EngineDriver
from worker.engine.api import EngineDied
from worker.intake import Intake
from worker.metrics import WorkerMetrics
from worker.replies import Replies

log = structlog.get_logger(__name__)

_INTAKE_IDLE_S = 10.0  # intake that has not polled for this long is not ready


class Status:
    def __init__(
        self,
        settings: Settings,
        model: ModelSettings,
        worker_id: str,
        producer: AIOKafkaProducer,
        codec: Codec,
        *,
        driver: EngineDriver,
        intake: Intake,
        commits: Commits,
        replies: Replies,
        fatal: Callable[[], str | None],
        on_engine_died: Callable[[str], None],
        metrics: WorkerMetrics | None = None,
        probes: Probes | None = None,
        joined: Callable[[], bool] = lambda: True,
    ) -> None:
        self._settings = settings
        self._model = model
        self._worker_id = worker_id
        self._producer = producer
        self._codec = codec
        self._driver = driver
        self._intake = intake
        self._commits = commits
        self._replies = replies
        self._fatal = fatal
        self._on_engine_died = on_engine_died
        self._metrics = metrics  # the engine's stats for a scrape (running, waiting, KV use, speculation)
        self._probes = probes  # /livez and /readyz (fleet/metrics.py), beside the health file
        self._joined = joined  # whether the consumer has joined its group (an assignment came, maybe empty)

    def ready(self) -> tuple[bool, str]:
        """Readiness from progress: intake is polling, the engine steps while it holds work."""
        fatal = self._fatal()
        if fatal is not None:
            return False, fatal
        stalled = self._driver.stalled_s()
        if stalled > min(self._settings.worker.engine_watchdog_s / 2, 10.0):
            return False, f"engine stalled {stalled:.1f} s"
        intake_age = time.monotonic() - self._intake.beat_s
        if intake_age > _INTAKE_IDLE_S:
            return False, f"intake idle {intake_age:.1f} s"
        return True, "ok"

    async def run(self, stop: asyncio.Event) -> None:
        settings, replies = self._settings, self._replies
        last_tokens, last_t = replies.tokens, time.monotonic()
        while not stop.is_set():
            try:
                s = self._driver.engine.stats()
            except EngineDied as exc:
                self._on_engine_died(str(exc))
                return
            now_t = time.monotonic()
            rate = (replies.tokens - last_tokens) / max(1e-3, now_t - last_t)
            last_tokens, last_t = replies.tokens, now_t
            ready, why = self.ready()
            st = WorkerStatus(
                worker_id=self._worker_id,
                model=self._model.name,
                ts_ms=int(time.time() * 1000),
                running=s.running,
                waiting=s.waiting,
                capacity=self._model.max_inflight,
                state="stalled" if not ready else ("paused" if self._intake.paused else "serving"),
                weights_bytes=s.weights_bytes,
                kv_cache_bytes=s.kv_cache_bytes,
                kv_budget_bytes=s.kv_budget_bytes,
                tokens_per_s=round(rate, 2),
                uncommitted=self._commits.uncommitted,
                max_uncommitted=self._commits.max_uncommitted_seen,
                spec_draft_tokens=s.spec_draft_tokens,
                spec_accepted_tokens=s.spec_accepted_tokens,
                spec_acceptance=s.spec_acceptance,
            )
            progress = {
                "consumed": self._intake.consumed,
                "committed": self._commits.committed,
                "engine_steps": self._driver.counts.engine_steps,
                "undecodable": self._intake.undecodable,
            }
            try:
                await self._producer.send(
                    settings.kafka.topics.status, self._codec.encode(st), key=self._worker_id.encode()
                )
            except KafkaError as exc:
                log.warning("worker.status_failed", error=repr(exc))
                ready, why = False, repr(exc)[:200]
            beat(settings.health_file, ready=ready, worker=self._worker_id, state=st.state, why=why, **progress)
            if self._metrics is not None:
                self._metrics.engine = s
            if self._probes is not None:
                # over HTTP, ready also needs the group joined: Kubernetes then routes rollouts by it. A worker
                # beyond the partition count joins with none and is ready (a standby that takes over on a revoke):
                # waiting for partitions would hold a surge pod unready, and the rollout with it
                joined = self._joined()
                http_ready, http_why = (ready, why) if joined or not ready else (False, "not in the group yet")
                self._probes.beat(ready=http_ready, why=http_why, worker=self._worker_id, state=st.state)
            await asyncio.sleep(settings.latency.status_interval_ms / 1000)
