"""What the worker sends: the driver's events as reply records, refusals (an error reply and a DLQ
copy), usage records; and each request's offset finished once its records have their outcome.

Everything goes through the outbox (worker/outbox.py): nothing here awaits a send, so the engine
loop never waits on Kafka and one unwritable destination never blocks a partition. The offset of a
request is finished (worker/commits.py) once every record that ends it is delivered or recorded
undeliverable; a request whose outcome is unknown when the outbox closes stays uncommitted.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog
from aiokafka import TopicPartition

from contracts.codec import Codec, ContentType
from contracts.messages import Chunk, Done, Error, ErrorCode, Progress, Timings, UsageRecord
from contracts.topics import Headers
from contracts.validation import is_topic_name
from fleet.fetch import Undecodable
from fleet.record_mac import Kind, record_mac
from fleet.records import dlq_record
from fleet.settings import ModelSettings, Settings
from worker.commits import Commits
from worker.driver import Update
from worker.engine.api import FinishKind
from worker.outbox import Delivery, Outbox
from worker.progress import ProgressGate
from worker.state import RequestState

log = structlog.get_logger(__name__)

_TOKEN_USING = (FinishKind.STOP, FinishKind.LENGTH, FinishKind.CANCELLED, FinishKind.EXPIRED)


class Replies:
    def __init__(
        self, settings: Settings, model: ModelSettings, outbox: Outbox, usage: Outbox, commits: Commits, codec: Codec
    ) -> None:
        self._settings = settings
        self._model = model
        self._topics = settings.kafka.topics
        self._outbox = outbox
        self._usage = usage
        self._commits = commits
        self._codec = codec
        # resume: progress records before the chunks they cover (None: resume is off)
        self._mac = record_mac(settings.kafka.record_key)  # set: usage and progress records are signed
        self.progress = ProgressGate(outbox, self._topics.progress, self._mac) if settings.worker.resume else None
        self._answered: OrderedDict[tuple[str | None, str], Done] = OrderedDict()  # (tenant, id) -> its `done`
        self._tasks: set[asyncio.Task[None]] = set()  # one per request waiting for its records' outcome
        self.done = 0
        self.errors = 0
        self.tokens = 0
        self.refused: dict[str, int] = {}  # error code -> requests refused with it (reject), for the metrics

    # -- the driver's events -------------------------------------------------------------------------
    def deliver(self, upd: Update) -> None:
        """Send what an Update holds; a request that ended is counted, its usage recorded, and its
        offset finished once its final events have their outcome."""
        for ev in upd.requests:
            state = ev.state
            terminal = ev.final[-1] if ev.final else None
            if isinstance(terminal, Done) and self.progress is not None:
                # the tail and `done` wait for a record that says so: a new owner sends them again, not more text
                final = [*ev.chunks, *ev.final]
                # finished: the engine did not die on it (not charged); a new owner only sends the final events
                record = state.progress(max(0, state.started_attempts - 1), self._model.name, ev.finished)
                futs = self._send_after(state, record, final)[len(ev.chunks) :]
            else:
                self._send_chunks(state, ev.chunks)
                if ev.finished is None or ev.finished is FinishKind.ABANDONED or terminal is None:
                    continue  # running, or given up: no terminal event, the offset stays for a redo
                futs = [self.send_event(state, e) for e in ev.final]
            if isinstance(terminal, Done):
                self._remember_answer(
                    state.request.tenant, state.request.id, terminal
                )  # errors are not replayed: a retry may fare better
                self.done += 1
                self.tokens += terminal.usage.completion_tokens
            else:
                self.errors += 1
            if ev.finished is not None and ev.finished in _TOKEN_USING:
                timings = terminal.timings if isinstance(terminal, Done) else state.timings(upd.at_s)
                self._send_usage(state, ev.finished, timings)
            self.track(futs, state.partition, state.offset, ended=(state.request.tenant, state.request.id))
        for p in upd.poisoned:
            s = p.state
            self.reject(
                s.partition,
                s.record,
                ErrorCode.POISON,
                p.reason,
                s.request.id,
                s.request.reply_to,
                s.content_type,
                ended=True,
                tenant=s.request.tenant,
            )

    def _send_chunks(self, state: RequestState, chunks: list[Chunk]) -> None:
        if not chunks:
            return
        if self.progress is None:
            for chunk in chunks:
                self.send_event(state, chunk)
            return
        self._send_after(state, state.progress(state.started_attempts, self._model.name), list(chunks))

    def _send_after(
        self, state: RequestState, record: Progress, events: list[Chunk | Done | Error]
    ) -> list[asyncio.Future[Delivery]]:
        assert self.progress is not None
        sends = [functools.partial(self.send_event, state, e) for e in events]
        return self.progress.send_after(record, sends)

    def start_run(self, state: RequestState, enter: Callable[[], None]) -> None:
        """The driver's `before_launch`: the run enters the engine once its start is durable, so an engine that
        dies with it counts against it on the next owner (`attempts`). Not at all when the worker closed first."""
        if self.progress is None:
            enter()
            return
        written = self.progress.write(state.progress(state.started_attempts, self._model.name))
        written.add_done_callback(lambda f: None if f.cancelled() else enter())

    def release(self, states: list[RequestState]) -> list[asyncio.Future[Delivery]]:
        """Requests this worker lets go alive (a revoked partition, a drain): their records, uncharged, so the
        next owner continues from here and does not count this start as a death."""
        if self.progress is None:
            return []
        name = self._model.name
        return [self.progress.write(s.progress(max(0, s.started_attempts - 1), name)) for s in states]

    def answered(self, tenant: str | None, request_id: str) -> Done | None:
        """The `done` this worker sent for `request_id` of `tenant`, if it is still remembered. Keyed by the
        tenant too: another tenant's request under the same id is a request of its own, never answered with
        this text (the router sets the authenticated tenant on what it forwards)."""
        return self._answered.get((tenant, request_id))

    def _remember_answer(self, tenant: str | None, request_id: str, terminal: Done) -> None:
        key = (tenant, request_id)
        self._answered[key] = terminal
        self._answered.move_to_end(key)
        while len(self._answered) > self._settings.worker.answered_ids:
            self._answered.popitem(last=False)

    # -- records -------------------------------------------------------------------------------------
    def send_event(self, state: RequestState, ev: Chunk | Done | Error) -> asyncio.Future[Delivery]:
        fut = self.send(state.request.reply_to, state.request.id, ev, state.content_type)
        if isinstance(ev, Chunk):  # what the next progress record need not ask a new owner to send again
            seq = ev.seq
            fut.add_done_callback(
                lambda f: state.confirm(seq) if not f.cancelled() and f.result() is Delivery.DELIVERED else None
            )
        return fut

    def send(self, topic: str, key: str, ev: Any, ct: ContentType) -> asyncio.Future[Delivery]:
        value = self._codec.encode(ev, ct)
        headers = [(Headers.CONTENT_TYPE, ct.value.encode())]
        return self._outbox.submit(topic, value, key=key.encode(), headers=headers, what=key)

    def reject(
        self,
        tp: Any,
        rec: Any,
        code: ErrorCode,
        message: str,
        request_id: str | None,
        reply_to: str | None,
        ct: ContentType = ContentType.JSON,
        *,
        dlq: bool = True,
        ended: bool = False,
        tenant: str | None = None,
    ) -> None:
        """Refuse a record (`rec`, a ConsumerRecord from partition `tp`): an error event to its reply
        topic (when it names one) and a DLQ copy (cut to fit, noted in a header); the offset is
        finished once both have their outcome."""
        log.info("worker.reject", request_id=request_id, code=code.value, reason=message[:200], dlq=dlq)
        self.refused[code.value] = self.refused.get(code.value, 0) + 1
        futs: list[asyncio.Future[Delivery]] = []
        if isinstance(request_id, str) and request_id and isinstance(reply_to, str) and is_topic_name(reply_to):
            ev = Error(id=request_id[:200], code=code, message=message, retriable=code.retriable)
            futs.append(self.send(reply_to, request_id[:200], ev, ct))
        if dlq:
            value, key, headers = dlq_record(
                rec.value,
                rec.key if isinstance(rec.key, bytes) else None,
                rec.headers,
                rec.topic,
                rec.partition,
                rec.offset,
                code.value,
                message,
                self._settings.kafka.max_request_bytes,
            )
            futs.append(
                self._outbox.submit(self._topics.dlq, value, key=key, headers=headers, what=f"dlq {code.value}")
            )
        self.errors += 1
        self.track(futs, tp, rec.offset, ended=(tenant, request_id) if ended and isinstance(request_id, str) else None)

    async def dead_letter_batch(self, bad: Undecodable) -> None:
        """A batch of the model's topic that nothing can decode: its raw bytes to the DLQ; its offsets count as
        taken and finish once that copy has its outcome (so the commit passes it only then)."""
        tp = TopicPartition(bad.topic, bad.partition)
        last = bad.next_offset - 1
        self._commits.take(tp, last)
        value, key, headers = bad.dlq(self._settings.kafka.max_request_bytes)
        fut = self._outbox.submit(self._topics.dlq, value, key=key, headers=headers, what="dlq undecodable")
        self.track([fut], tp, last)

    def _send_usage(self, state: RequestState, kind: FinishKind, timings: Timings) -> None:
        """One usage record per run that consumed tokens, whatever way it ended, with its latency (`timings`, as
        its `done` says them); retried until delivered."""
        prompt, completion = state.num_prompt_tokens, state.detok.num_tokens
        if not prompt and not completion:
            return
        m = self._model
        started = state.first_token_s is not None  # else the timings' first-token times are the end's
        cost = (prompt * m.price_per_1k_prompt + completion * m.price_per_1k_completion) / 1000
        rec = UsageRecord(
            id=state.request.id,
            model=m.name,
            tenant=state.request.tenant,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=round(cost, 8),
            ts_ms=int(time.time() * 1000),
            finish=kind.value,
            run_id=state.run_id,
            tier=state.tier,
            queue_ms=timings.queue_ms if started else None,
            ttft_ms=timings.ttft_ms if started else None,
            tpot_ms=timings.tpot_ms if started else None,
            total_ms=timings.total_ms,
        )
        key, value = state.request.id.encode(), self._codec.encode(rec)
        headers = [self._mac.header(Kind.USAGE, key, value)] if self._mac else None
        self._usage.submit(self._topics.usage, value, key=key, headers=headers, what="usage")

    # -- outcomes ------------------------------------------------------------------------------------
    def track(
        self, futs: list[asyncio.Future[Delivery]], tp: Any, offset: int, *, ended: tuple[str | None, str] | None = None
    ) -> None:
        """Finish the offset once every record of the request has its outcome (delivered or undeliverable);
        `ended`: the (tenant, id) whose progress record is then deleted (nobody is to resume it)."""
        task = asyncio.ensure_future(self._await_outcome(futs, tp, offset, ended))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_outcome(
        self, futs: list[asyncio.Future[Delivery]], tp: Any, offset: int, ended: tuple[str | None, str] | None = None
    ) -> None:
        try:
            await asyncio.gather(*futs)
        except asyncio.CancelledError:
            # the outbox closed first: the terminal event may not have landed, leave the offset for a redo
            log.info("worker.outcome_unknown", partition=tp.partition, offset=offset)
            return
        if ended and self.progress is not None:
            # deleted once the commit past it is confirmed (worker/commits.py): until then a redelivery finds the
            # record with its `finish` and sends the same final events again, never a second, different end
            gate, (tenant, rid) = self.progress, ended
            self._commits.after_commit(tp, offset, lambda: gate.delete(tenant, rid))
        self._commits.finish(tp, offset)

    async def settle(self) -> None:
        """Wait until every tracked request knows its outcome (after the outbox closed)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
