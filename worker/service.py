"""The worker: consume `llm.requests.<model>` in group `llm-worker-<model>`, run each request in the
engine, stream its replies, and commit its offset only after its terminal event has an outcome.

This module only wires the parts and supervises their tasks; each job is one module:

    worker/intake.py     consume, admit (decode, validate, tokenize), backpressure
    worker/driver.py     the engine driver, no Kafka: step, output processing, step-failure
                         isolation, deadlines, progress (the in-process benchmark uses it too)
    worker/replies.py    events, refusals (with DLQ copies) and usage into the outbox; outcomes
    worker/outbox.py     per-topic lanes, retries, a recorded `undeliverable`
    worker/progress.py   resume state on llm.progress: the view read at a takeover, the gate that writes
                         each chunk's record before the chunk, attempts across workers
    worker/commits.py    in-order commits, confirmed by the broker, retried
    worker/rebalance.py  revoked partitions: finish within a grace, commit, abandon the rest
    worker/control.py    cancel messages (every worker of the model reads them all)
    worker/status.py     the status record and the health file, from progress
    worker/watchdog.py   the worker's own deadlines; a hung engine ends the worker

Every long-lived task is supervised: one that dies ends the process non-zero, so Kafka hands its
partitions to another worker. SIGTERM drains: intake stops, in-flight requests may finish within
`drain_grace_s`, the rest is abandoned uncommitted.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import structlog

from contracts.codec import Codec
from fleet.kafka import ProducerPurpose, make_consumer, make_producer, with_retry
from fleet.metrics import Probes
from fleet.settings import ModelSettings, Settings
from worker.commits import Commits
from worker.control import Control
from worker.driver import EngineDriver, Update
from worker.engine.api import Engine
from worker.intake import Intake
from worker.metrics import WorkerMetrics
from worker.outbox import Outbox
from worker.progress import ProgressView
from worker.rebalance import Rebalance, release
from worker.replies import Replies
from worker.status import Status
from worker.watchdog import watch

log = structlog.get_logger(__name__)


def new_worker_id(model: str) -> str:
    """A worker's id: its model, host, process and a random tail (a restart in the same pod is a new worker)."""
    return f"{model}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


class WorkerService:
    def __init__(
        self,
        settings: Settings,
        model: ModelSettings,
        engine: Engine,
        tokenizer: Any,
        *,
        max_model_len: int,
        worker_id: str | None = None,
        metrics: WorkerMetrics | None = None,
        probes: Probes | None = None,
    ) -> None:
        self.settings = settings
        self.model = model
        self.engine = engine
        self.tun = settings.worker
        self.worker_id = worker_id or new_worker_id(model.name)
        self.metrics = metrics  # None: metrics off, nothing observed
        self.probes = probes  # /livez and /readyz over HTTP (None: metrics off)
        self.driver = EngineDriver(
            engine,
            tokenizer,
            model=model.name,
            max_model_len=max_model_len,
            latency=settings.latency,
            max_attempts=self.tun.max_attempts,
            suspect_alone_after=self.tun.suspect_alone_after,
        )
        self._closing = False
        self._stop: asyncio.Event | None = None
        self._fatal: str | None = None  # set when the engine died or hung, or a task died: exit without draining
        self.driver.observer = metrics

    # -- lifecycle ---------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        structlog.contextvars.bind_contextvars(model=self.model.name, worker=self.worker_id)
        self._stop = stop
        settings, topics, codec, driver = self.settings, self.settings.kafka.topics, Codec(), self.driver
        producer = make_producer(settings, purpose=ProducerPurpose.REPLIES)
        usage_producer = make_producer(settings, purpose=ProducerPurpose.USAGE)
        instance = f"{self.tun.group_instance_id}-{self.model.name}" if self.tun.group_instance_id else None
        consumer = make_consumer(
            settings,
            group_id=topics.worker_group(self.model.name),
            max_poll_records=self.model.max_inflight,
            **({"group_instance_id": instance} if instance else {}),
        )
        await with_retry("worker.producer.start", producer.start, stop=stop)
        await with_retry("worker.usage.start", usage_producer.start, stop=stop)
        outbox = Outbox(producer, self.tun, name="replies", known_topic=topics.status)
        usage = Outbox(usage_producer, self.tun, name="usage", known_topic=topics.status)
        commits = Commits(consumer, self.tun)
        replies = Replies(settings, self.model, outbox, usage, commits, codec)

        def progress_off() -> None:  # no llm.progress topic (an older deployment): no gates, restarts as before
            replies.progress = None
            driver.before_launch = None

        view = ProgressView(settings, self.model.name, on_missing=progress_off) if self.tun.resume else None
        if view is not None:
            driver.before_launch = replies.start_run
        intake = Intake(
            settings,
            self.model,
            consumer,
            driver,
            replies,
            commits,
            codec,
            on_engine_died=self._on_engine_died,
            progress=view,
        )
        control = Control(settings, driver, replies, codec)
        status = Status(
            settings,
            self.model,
            self.worker_id,
            producer,
            codec,
            driver=driver,
            intake=intake,
            commits=commits,
            replies=replies,
            fatal=lambda: self._fatal,
            on_engine_died=self._on_engine_died,
            metrics=self.metrics,
            probes=self.probes,
            joined=lambda: listener.joined,
        )
        if self.metrics is not None:
            outboxes = {"replies": outbox, "usage": usage}
            self.metrics.attach(driver=driver, intake=intake, commits=commits, replies=replies, outboxes=outboxes)

        def sink(upd: Update) -> None:
            replies.deliver(upd)
            if upd.engine_died is not None:
                self._on_engine_died(upd.engine_died)

        lanes = [topics.model(self.model.name), topics.model_batch(self.model.name)]
        listener = Rebalance(self.tun, intake, driver, commits, replies=replies, progress=view)
        consumer.subscribe(lanes, listener=listener)
        await with_retry("worker.consumer.start", consumer.start, stop=stop)
        stats = self.engine.stats()
        log.info(
            "worker.started",
            topics=lanes,
            group=topics.worker_group(self.model.name),
            group_instance_id=instance,
            weights_bytes=stats.weights_bytes,
            kv_cache_bytes=stats.kv_cache_bytes,
            simulated=self.engine.simulated,
        )
        jobs: dict[str, Coroutine[Any, Any, None]] = {
            "intake": intake.run(stop),
            "engine": driver.run(sink),
            "control": control.run(stop),
            "commit": commits.run(),
            "status": status.run(stop),
            "watchdog": watch(self.tun, driver, sink, self._die, stop),
        }
        if view is not None:
            jobs["progress"] = view.run(stop)
        tasks = [asyncio.create_task(job, name=name) for name, job in jobs.items()]
        for t in tasks:
            t.add_done_callback(self._supervise)
        try:
            await stop.wait()
            if self._fatal is None:
                await self._drain(intake, commits, replies)
        finally:
            self._closing = True
            if self.probes is not None:
                self.probes.phase("stopping")
            driver.close()
            commits.close()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # a fatal exit leaves what is queued uncommitted for the next owner; a drain lets it go out first
            await outbox.close(timeout_s=0 if self._fatal is not None else 5.0)
            if self._fatal is None:
                await replies.settle()
            await usage.close(timeout_s=2.0)
            await commits.commit_now()
            await consumer.stop()  # leaves the group (a static member stays until its session ends)
            await usage_producer.stop()
            await producer.stop()
            self.engine.close()
            counts = driver.counts
            log.info(
                "worker.stopped",
                undeliverable=outbox.undeliverable + usage.undeliverable,
                delivered=outbox.delivered + usage.delivered,
                send_retries=outbox.retries + usage.retries,
                done=replies.done,
                errors=replies.errors,
                abandoned=counts.abandoned,
                tokens=replies.tokens,
                consumed=intake.consumed,
                committed=commits.committed,
                engine_steps=counts.engine_steps,
                engine_failures=counts.engine_failures,
                answered_again=intake.answered_again,
                undecodable=intake.undecodable,
                expired_by_worker=counts.expired_by_worker,
            )
        if self._fatal is not None:
            # non-zero exit: the orchestrator restarts the worker; its uncommitted requests go to another one
            raise SystemExit(f"worker {self.worker_id}: {self._fatal}")

    def _supervise(self, task: asyncio.Task[Any]) -> None:
        """Done-callback of every long-lived task: one that ends while the worker runs is fatal."""
        if task.cancelled() or self._closing:
            return
        exc = task.exception()
        if exc is None and self._stop is not None and self._stop.is_set():
            return  # a loop that saw the stop
        log.error("worker.task_died", task=task.get_name(), exc_info=exc)
        self._die(f"task {task.get_name()} ended: {exc!r}")

    def _die(self, reason: str) -> None:
        """Exit non-zero without draining: what this worker holds stays uncommitted for another one."""
        if self._fatal is None:
            self._fatal = reason
        self.driver.abandon_where(lambda _: True)
        if self._stop is not None:
            self._stop.set()

    def _on_engine_died(self, reason: str) -> None:
        """The model's process is gone with the requests it held: abandon them uncommitted and stop."""
        log.error("worker.engine_process_died", reason=reason, in_flight=len(self.driver.states))
        self._die(f"engine process died: {reason}")

    async def _drain(self, intake: Intake, commits: Commits, replies: Replies) -> None:
        """SIGTERM: stop intake, let in-flight requests finish within the grace, abandon the rest."""
        intake.stop_taking()
        log.info("worker.draining", in_flight=len(self.driver.states), grace_s=self.tun.drain_grace_s)
        deadline = time.monotonic() + self.tun.drain_grace_s
        while commits.uncommitted and time.monotonic() < deadline:  # noqa: ASYNC110 - a bounded poll, not a wait for one event
            await asyncio.sleep(0.05)
        let_go = list(self.driver.states.values())  # abandoned first: no chunk record may follow the release
        self.driver.abandon_where(lambda _: True)
        await release(replies, let_go)
