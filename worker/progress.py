"""Resume state on `llm.progress` (compacted, key: the tenant and the request id, `progress_key`): the view a
worker reads when it takes a request over, and the gate that holds each chunk until the progress record that
covers it is durable. A record names the model-topic record it belongs to; a takeover resumes only a redelivery
of that record.

Why the gate: a new owner continues from the last progress record it can read, under the same `run_id`, with
`seq` going on. If a chunk reached the client before the record covering it was durable, the new owner would
send that `seq` again with text cut elsewhere, and a client that drops duplicate `seq`s would lose text. With
the record first, the worst case is the other way round (a record durable, its chunk lost with the worker): the
record carries that chunk's text (`last_chunk`) and the new owner sends it again; a client that had it drops it.
The cost is one produce acknowledgement before each chunk (the records are pipelined, not sent one by one).

Attempts across processes: the record a worker writes when it starts a request counts it (`attempts`, the
workers that started it and did not let it go); a worker that lets it go in a rebalance or a drain writes it
back uncharged. A request whose record says `max_attempts` is refused as `poison` (worker/intake.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from contracts.codec import ContentType
from contracts.messages import Progress
from contracts.topics import Headers
from fleet.fetch import Fetch
from fleet.kafka import make_consumer, with_retry
from fleet.record_mac import Kind, RecordMac, record_mac
from fleet.settings import Settings
from worker.outbox import Delivery, Outbox

log = structlog.get_logger(__name__)

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Progress)
_START_WAIT_S = 30.0  # a view that has not started reading yet (a worker starting): wait this long for it
_HEADERS = [(Headers.CONTENT_TYPE, ContentType.MSGPACK.value.encode())]
MAX_RECORDS = 100_000  # progress records a worker's view keeps (the least recently written go first)


def progress_key(tenant: str | None, request_id: str) -> bytes:
    """A request's key on the topic: its tenant and id (a tenant name has no NUL: the first one separates them).
    Two tenants' requests with the same id have two records: neither overwrites nor deletes the other's."""
    return (tenant or "").encode() + b"\x00" + request_id.encode("utf-8", "surrogatepass")


def encode_progress(p: Progress) -> bytes:
    return _ENCODER.encode(p)


def decode_progress(value: bytes) -> Progress | None:
    try:
        return _DECODER.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class ProgressView:
    """This model's progress records, read from the start of the topic and kept current (tombstones delete).
    Holds only requests in flight somewhere in the fleet: a request's record is deleted once it ended."""

    def __init__(self, settings: Settings, model: str, *, on_missing: Callable[[], None] | None = None) -> None:
        self._settings = settings
        self._on_missing = on_missing  # the topic does not exist: the worker stops writing progress
        self._model = model
        self._topic = settings.kafka.topics.progress
        self._records: dict[tuple[str | None, str], Progress] = {}  # (tenant, id); oldest first, <= MAX_RECORDS
        self._mac = record_mac(settings.kafka.record_key)  # set: records without a worker's MAC are passed over
        self.forged = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._parts: list[TopicPartition] = []
        self.available = False  # the topic was found and is being read
        self.missing = False  # the topic does not exist: requests restart, as before
        self.read = 0

    def get(self, request_id: str, tenant: str | None, source: str | None = None) -> Progress | None:
        """The request's record, if it belongs to `source` (the redelivered record; None: any)."""
        p = self._records.get((tenant, request_id))
        if p is None or (source is not None and p.source is not None and p.source != source):
            return None
        return p

    def apply(self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]] = ()) -> None:
        """One record of the topic: a progress record of this model, or a tombstone. Where records are signed, one
        without a worker's MAC (forged text to inject into an answer, a tombstone to delete another's) is passed
        over."""
        if key is None:
            return
        self.read += 1
        if self._mac is not None and not self._mac.verify(Kind.PROGRESS, key, value, headers):
            self.forged += 1
            return
        tenant_part, nul, id_part = key.partition(b"\x00")
        if not nul:
            return  # not a progress key (an older release's bare id: its request restarts, as without resume)
        k = (tenant_part.decode("utf-8", "replace") or None, id_part.decode("utf-8", "surrogatepass"))
        if value is None:
            self._records.pop(k, None)
            return
        p = decode_progress(value)
        if p is not None and p.model == self._model and (p.tenant, p.id) == k:
            self._records.pop(k, None)
            self._records[k] = p
            while len(self._records) > MAX_RECORDS:  # unique ids cannot grow a worker without bound
                del self._records[next(iter(self._records))]

    async def run(self, stop: asyncio.Event) -> None:
        settings = self._settings
        consumer = make_consumer(settings, group_id=None, auto_offset_reset="earliest")
        self._consumer = consumer
        fetch = Fetch(consumer, settings, name="worker.progress")
        await with_retry("worker.progress.start", consumer.start, stop=stop)
        try:
            await consumer.topics()
            found = consumer.partitions_for_topic(self._topic)
            if not found:
                log.warning("worker.progress_unavailable", topic=self._topic)  # requests restart, as before
                self.missing = True
                if self._on_missing is not None:
                    self._on_missing()
                await stop.wait()
                return
            self._parts = [TopicPartition(self._topic, p) for p in sorted(found)]
            consumer.assign(self._parts)
            await consumer.seek_to_beginning(*self._parts)
            self.available = True
            while not stop.is_set():
                for records in (await fetch.poll(timeout_ms=50)).values():
                    for rec in records:
                        self.apply(rec.key, rec.value, list(rec.headers or ()))
        finally:
            self.available = False
            await fetch.stop()
            await consumer.stop()

    async def catch_up(self, timeout_s: float) -> bool:
        """Until the view has read what the topic held when this was called (at most `timeout_s`)."""
        start_by = time.monotonic() + max(timeout_s, _START_WAIT_S)
        while not self.available and not self.missing and time.monotonic() < start_by:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.02)
        deadline = time.monotonic() + timeout_s
        consumer = self._consumer
        if consumer is None or not self.available:
            return False
        try:
            ends = await asyncio.wait_for(consumer.end_offsets(self._parts), timeout_s)
            while time.monotonic() < deadline:
                behind = [tp for tp, end in ends.items() if await consumer.position(tp) < end]
                if not behind:
                    return True
                await asyncio.sleep(0.02)
        except (KafkaError, TimeoutError) as exc:
            log.warning("worker.progress_catch_up_failed", error=repr(exc))
            return False
        log.warning("worker.progress_behind", waited_s=timeout_s)
        return False


@dataclass(slots=True)
class _Held:
    record: asyncio.Future[Delivery]
    send: Sequence[Callable[[], asyncio.Future[Delivery]]]
    results: list[asyncio.Future[Delivery]]


class ProgressGate:
    """Writes progress records and holds the events each one covers until it is durable, in order per run."""

    def __init__(self, outbox: Outbox, topic: str, mac: RecordMac | None = None) -> None:
        self._outbox = outbox
        self._topic = topic
        self._mac = mac  # set: every record and tombstone is signed (only workers can write one a worker reads)
        self._held: dict[str, deque[_Held]] = {}  # run id -> what waits, oldest first
        self.written = 0
        self.failed = 0

    def write(self, p: Progress) -> asyncio.Future[Delivery]:
        self.written += 1
        key, value = progress_key(p.tenant, p.id), encode_progress(p)
        headers = [*_HEADERS, self._mac.header(Kind.PROGRESS, key, value)] if self._mac else _HEADERS
        return self._outbox.submit(self._topic, value, key=key, headers=headers, what=f"progress {p.id[:100]}")

    def delete(self, tenant: str | None, request_id: str) -> asyncio.Future[Delivery]:
        """The tombstone: the request ended, nobody resumes it."""
        key = progress_key(tenant, request_id)
        headers = [self._mac.header(Kind.PROGRESS, key, None)] if self._mac else None
        return self._outbox.submit(self._topic, None, key=key, headers=headers, what=f"progress end {request_id[:100]}")

    def send_after(
        self, p: Progress, sends: Sequence[Callable[[], asyncio.Future[Delivery]]]
    ) -> list[asyncio.Future[Delivery]]:
        """Write `p`, then (once it has its outcome, and after what this run holds already) call each of `sends`.
        Returns one future per send with its outcome (cancelled when the worker closed first)."""
        loop = asyncio.get_running_loop()
        held = _Held(self.write(p), sends, [loop.create_future() for _ in sends])
        queue = self._held.setdefault(p.run_id, deque())
        queue.append(held)
        held.record.add_done_callback(lambda _: self._release(p.run_id))
        return held.results

    def _release(self, run_id: str) -> None:
        queue = self._held.get(run_id)
        while queue and queue[0].record.done():
            held = queue.popleft()
            if held.record.cancelled():  # the outbox closed: nothing more goes out for this run
                for r in held.results:
                    r.cancel()
                continue
            if held.record.result() is not Delivery.DELIVERED:
                self.failed += 1  # the chunk goes anyway: a resume from an older record may then repeat text
                log.warning("worker.progress_undeliverable", run_id=run_id)
            for send, result in zip(held.send, held.results, strict=True):
                _chain(send(), result)
        if queue is not None and not queue:
            del self._held[run_id]


def _chain(src: asyncio.Future[Delivery], dst: asyncio.Future[Delivery]) -> None:
    def done(f: asyncio.Future[Delivery]) -> None:
        if dst.done():
            return
        if f.cancelled():
            dst.cancel()
        else:
            dst.set_result(f.result())

    src.add_done_callback(done)
