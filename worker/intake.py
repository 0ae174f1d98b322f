"""Intake: consume the model's two lanes, admit each record into the engine driver, and hold back when the
worker holds `max_inflight` uncommitted requests (backpressure). The interactive lane is always read; the
batch lane only while worker/lanes.py finds spare capacity (it is paused otherwise, so nothing of it is
fetched and held).

Every record gets an outcome here or later: refused with a code (an error reply and, except for a
passed deadline, a DLQ copy), answered again from memory (a re-sent id this worker finished), or
started in the driver, whose terminal event finishes its offset. Any exception while admitting one
record becomes that record's `internal` refusal, never the end of intake.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from contracts.codec import Codec, ContentType, DecodeFailure, content_type_from_headers
from contracts.messages import ErrorCode, Progress, Request
from contracts.topics import Headers
from contracts.validation import InvalidRequest, validate_request
from fleet.fetch import Fetch
from fleet.record_mac import Kind, record_mac
from fleet.settings import ModelSettings, Settings
from worker.commits import Commits
from worker.driver import EngineDriver
from worker.engine.api import EngineDied
from worker.inputs import prompt_token_ids, reply_refusal
from worker.lanes import Lanes
from worker.progress import ProgressView
from worker.replies import Replies
from worker.state import record_source

log = structlog.get_logger(__name__)


class Intake:
    def __init__(
        self,
        settings: Settings,
        model: ModelSettings,
        consumer: AIOKafkaConsumer,
        driver: EngineDriver,
        replies: Replies,
        commits: Commits,
        codec: Codec,
        *,
        on_engine_died: Callable[[str], None],
        progress: ProgressView | None = None,
    ) -> None:
        self._settings = settings
        self._model = model.name
        self._progress = progress  # resume state and attempts across workers (None: resume is off)
        self._bound = model.max_inflight
        self._consumer = consumer
        # a batch nothing can decode goes to the DLQ raw and its offsets finish once that copy is delivered
        self._fetch = Fetch(consumer, settings, name=f"worker.{model.name}", on_undecodable=replies.dead_letter_batch)
        self._driver = driver
        self._mac = record_mac(settings.kafka.record_key)  # set: only records the router forwarded are served
        self._replies = replies
        self._commits = commits
        self._codec = codec
        self._on_engine_died = on_engine_died
        self._batch_topic = settings.kafka.topics.model_batch(model.name)
        self._lanes = Lanes(model.max_running, settings.worker)
        self._lane_paused = False
        self.paused = False
        self._catching_up: asyncio.Future[bool] | None = None  # the progress view reading what an assignment needs
        self.beat_s = time.monotonic()  # the last turn of the loop: readiness reads it
        self.consumed = 0
        self.answered_again = 0

    @property
    def undecodable(self) -> int:
        """Batches of the model's topics that nothing could decode (copied raw to the DLQ, stepped past)."""
        return self._fetch.undecodable_batches

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self._run(stop)
        finally:
            await self._fetch.stop()

    async def _run(self, stop: asyncio.Event) -> None:
        bound = self._bound
        resume_at = bound - max(1, bound // 4)  # hysteresis: no pause/resume flapping at the bound
        while not stop.is_set():
            self.beat_s = time.monotonic()
            uncommitted = self._commits.uncommitted
            room = bound - uncommitted
            if room <= 0 or (self.paused and uncommitted > resume_at):
                self._set_paused(True)
                await asyncio.sleep(0.01)
                continue
            self._set_paused(False)
            parts = self._consumer.assignment()
            lane = [tp for tp in parts if tp.topic == self._batch_topic]
            main = [tp for tp in parts if tp.topic != self._batch_topic]
            held = sum(self._commits.offsets.unfinished(tp) for tp in lane)
            lane_room = min(room, self._lanes.batch_room(uncommitted - held, held, time.time())) if lane else 0
            self._pause_lane(lane, lane_room <= 0)
            try:
                got = dict(await self._fetch.getmany(*main, timeout_ms=50, max_records=room)) if main else {}
                if lane_room > 0:
                    wait_ms = 0 if main else 50
                    more = await self._fetch.getmany(*lane, timeout_ms=wait_ms, max_records=lane_room)
                    got.update(more)
                elif not main:
                    await asyncio.sleep(0.05)
            except KafkaError as exc:
                log.warning("worker.fetch_error", error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            await self._caught_up()  # records of a new assignment wait for the progress records of their requests
            for tp, records in got.items():
                for rec in records:
                    self.admit_safely(tp, rec)

    def catch_up_first(self, catching_up: asyncio.Future[bool]) -> None:
        """A new assignment: admit nothing more until the progress view has read what the topic holds now (a
        request of another worker's must be seen with its progress and attempts, not started afresh)."""
        self._catching_up = catching_up

    async def _caught_up(self) -> None:
        pending = self._catching_up
        if pending is not None:
            await asyncio.wait([pending])  # bounded: the view's catch-up has its own timeout
            if self._catching_up is pending:
                self._catching_up = None

    def _pause_lane(self, lane: list[TopicPartition], pause: bool) -> None:
        """Pause or resume the batch lane (a rebalance resumes everything: asked again each turn)."""
        if pause:
            self._consumer.pause(*lane)
        elif self._lane_paused:
            self._consumer.resume(*lane)
        self._lane_paused = pause

    def stop_taking(self) -> None:
        """Draining: take nothing more (the loop may still run; it stays paused)."""
        self._consumer.pause(*self._consumer.assignment())
        self.paused = True

    def reapply(self, assigned: set[TopicPartition]) -> None:
        """After a rebalance (which resumes everything): pause the new partitions if intake is paused."""
        if self.paused:
            self._consumer.pause(*assigned)

    def _set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        parts = self._consumer.assignment()
        if paused:
            self._consumer.pause(*parts)
        else:
            self._consumer.resume(*parts)
        log.info("worker.paused" if paused else "worker.resumed", uncommitted=self._commits.uncommitted)

    def admit_safely(self, tp: TopicPartition, rec: ConsumerRecord[Any, Any]) -> None:
        """Any exception while admitting one record becomes that record's outcome (`internal`, with a
        DLQ copy), never the end of intake."""
        self._commits.take(tp, rec.offset)
        self.consumed += 1
        try:
            self._admit(tp, rec)
        except Exception as exc:
            log.exception("worker.admit_failed", partition=tp.partition, offset=rec.offset)
            try:
                reason = f"the worker failed on this record: {exc!r}"[:1000]
                self._replies.reject(tp, rec, ErrorCode.INTERNAL, reason, None, None)
            except Exception:  # not even a DLQ copy: the record still gets its outcome (logged, committed)
                log.exception("worker.reject_failed", partition=tp.partition, offset=rec.offset)
                self._commits.finish(tp, rec.offset)

    def _admit(self, tp: TopicPartition, rec: ConsumerRecord[Any, Any]) -> None:
        headers = list(rec.headers or ())
        reject = self._replies.reject
        key = rec.key if isinstance(rec.key, bytes) else None
        if self._mac is not None and not self._mac.verify(Kind.REQUEST, key, rec.value, headers):
            # not forwarded by the router: whoever wrote it skipped authentication, limits and budgets. No reply
            # (its reply_to is nobody's word), the DLQ copy alone
            reject(tp, rec, ErrorCode.UNAUTHENTICATED, "not forwarded by the router (no valid fleet-mac)", None, None)
            return
        try:
            ct = content_type_from_headers(headers)  # an unknown type is an invalid_encoding refusal, as below
            req = self._codec.decode_request(rec.value or b"", ct)
            validate_request(req, self._settings.limits)
        except (DecodeFailure, InvalidRequest) as exc:
            salvaged = getattr(exc, "salvaged", {})
            rid = salvaged.get("id") if isinstance(exc, DecodeFailure) else req.id
            reply_to = salvaged.get("reply_to") if isinstance(exc, DecodeFailure) else req.reply_to
            reject(tp, rec, exc.code, exc.message, rid, reply_to)
            return
        refusal = reply_refusal(self._settings, req)
        if refusal is not None:  # the router refuses these: a record here did not come through it
            reject(tp, rec, ErrorCode.FORBIDDEN, refusal, req.id, None, ct)  # no reply to a topic it may not name
            return
        answered = self._replies.answered(req.tenant, req.id)
        if answered is not None and req.id not in self._driver.by_request:
            # a re-send (or a redelivery) of an id this worker finished: the same answer, not a new run
            self.answered_again += 1
            log.info("worker.answered_again", request_id=req.id[:200], run_id=answered.run_id)
            fut = self._replies.send(req.reply_to, req.id, answered, ct)
            self._replies.track([fut], tp, rec.offset)
            return
        raw_intake = next((v for k, v in headers if k == Headers.INTAKE_MS), None)
        intake_s = _header_ms(raw_intake, rec.timestamp) / 1000
        now = time.time()
        if req.deadline_ms is not None and now * 1000 >= req.deadline_ms and not self._finished_before(tp, rec, req):
            late_ms = now * 1000 - req.deadline_ms
            reason = f"deadline passed {late_ms:.0f} ms before the worker took it"
            reject(tp, rec, ErrorCode.EXPIRED, reason, req.id, req.reply_to, ct, dlq=False)
            return
        try:
            ids = prompt_token_ids(req, self._driver.tokenizer, self._driver.max_model_len)
        except InvalidRequest as exc:
            reject(tp, rec, exc.code, exc.message, req.id, req.reply_to, ct)
            return
        if self._progress is None or self._replies.progress is None:
            self._start(tp, rec, req, ids, ct, intake_s, None, 0, None)
            return
        prior = self._progress.get(req.id, req.tenant, record_source(tp, rec.offset))
        if prior is not None and prior.run_id in self._driver.states:
            prior = None  # the record of a run this worker has in hand: a copy of a live request, not a takeover
        deaths = prior.attempts if prior is not None else 0
        if deaths >= self._settings.worker.max_attempts and (prior is None or prior.finish is None):
            reason = f"{deaths} workers died while running it (max_attempts {self._settings.worker.max_attempts})"
            log.warning("worker.poison", request_id=req.id[:200], deaths=deaths)
            reject(tp, rec, ErrorCode.POISON, reason, req.id, req.reply_to, ct, ended=True, tenant=req.tenant)
            return
        if prior is not None:
            log.info(
                "worker.resuming",
                request_id=req.id[:200],
                run_id=prior.run_id,
                tokens=len(prior.token_ids),
                deaths=deaths,
            )
        self._start(tp, rec, req, ids, ct, intake_s, prior, deaths, prior.run_id if prior else None)

    def _finished_before(self, tp: TopicPartition, rec: ConsumerRecord[Any, Any], req: Request) -> bool:
        """A redelivery of a request an earlier owner finished (its progress record says so): its final events
        go out again, whatever the deadline, never an `expired` after its `done`."""
        if self._progress is None or self._replies.progress is None:
            return False
        prior = self._progress.get(req.id, req.tenant, record_source(tp, rec.offset))
        return prior is not None and prior.finish is not None

    def _start(
        self,
        tp: TopicPartition,
        rec: ConsumerRecord[Any, Any],
        req: Request,
        ids: list[int],
        ct: ContentType,
        intake_s: float,
        prior: Progress | None,
        deaths: int,
        run_id: str | None,
    ) -> None:
        try:
            state = self._driver.add(
                req,
                ids,
                content_type=ct,
                intake_s=intake_s,
                partition=tp,
                offset=rec.offset,
                record=rec,
                run_id=run_id,
                progress=prior,
                deaths=deaths,
            )
        except EngineDied as exc:  # uncommitted: Kafka hands it to another worker
            self._on_engine_died(str(exc))
            return
        # what the router says in headers for `done`: the tier "auto" chose, and the model asked for (a fallback)
        state.tier = header_text(rec.headers, Headers.TIER)
        state.requested_model = header_text(rec.headers, Headers.REQUESTED_MODEL)
        if prior is not None and state.run_id == prior.run_id:
            # chunks the earlier owner had not seen delivered may not have gone out: again (clients drop a repeat)
            for again in state.resend_chunks(prior.text):
                self._replies.send_event(state, again)
        upd = self._driver.finish_resumed(state)
        if upd:
            self._replies.deliver(upd)


def header_text(headers: Any, name: str, max_bytes: int = 100) -> str | None:
    """The first `name` header as short text (a tier or model name): None when missing, empty, longer than
    `max_bytes` (a name is never that long: not cut into something else) or not UTF-8."""
    raw = next((v for k, v in headers or () if k == name), None)
    if not raw or len(raw) > max_bytes:
        return None
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError:
        return None


def _header_ms(raw: bytes | None, fallback: int) -> int:
    """An epoch-ms header, or `fallback` when it is missing, not a number, or not a plausible time."""
    try:
        value = int(raw[:20]) if raw and len(raw) <= 20 else fallback
    except ValueError:
        return fallback
    return value if 0 < value < 2**53 else fallback
