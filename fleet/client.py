"""The Python client library.

    async with FleetClient() as fleet:
        async for event in fleet.stream("Summarise ..."):
            ...                                  # Chunk ... then Done
        result = await fleet.generate("Hello")   # one GenerationResult

Many concurrent requests share one reply topic: a dispatcher task reads it
and routes events by request id. Every reply event carries a `run_id`; when a
request is redone elsewhere (a worker died, a partition moved), the stream
yields a `Restart` marker and then only events of the new run. Late events of
an abandoned run are dropped, and duplicate events are dropped by (run, seq),
so each request is presented exactly once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from contracts.codec import Codec, ContentType, DecodeFailure, content_type_from_headers
from contracts.errors import FleetError
from contracts.messages import Cancel, ChatMessage, Chunk, Done, Error, ErrorCode, Priority, Request, Timings, Usage
from contracts.topics import Headers
from fleet.fetch import Fetch
from fleet.kafka import ProducerPurpose, ensure_topics, make_consumer, make_producer
from fleet.settings import Settings, load_settings

log = structlog.get_logger(__name__)


class RequestFailed(FleetError):
    """The fleet answered with an `error` event (`code`, `message` and `retriable` are the event's)."""

    def __init__(self, event: Error) -> None:
        super().__init__(f"{event.code.value}: {event.message}", code=event.code.value, retriable=event.retriable)
        self.event = event
        self.code: ErrorCode = event.code  # the wire code (a str enum, so still a str)


class InvalidRequestError(RequestFailed):
    pass


class ExpiredError(RequestFailed):
    pass


class OverloadedError(RequestFailed):
    pass


class RequestCancelled(RequestFailed):
    """A cancel stopped the request (not asyncio's CancelledError: nothing here cancels a task)."""


class FleetTimeout(FleetError, TimeoutError):
    """No terminal event arrived within the client's timeout (the broker may be unreachable)."""

    default_code = "timeout"
    default_retriable = True


_ERRORS: dict[ErrorCode, type[RequestFailed]] = {
    ErrorCode.INVALID_ENCODING: InvalidRequestError,
    ErrorCode.INVALID_REQUEST: InvalidRequestError,
    ErrorCode.PROMPT_TOO_LONG: InvalidRequestError,
    ErrorCode.UNKNOWN_MODEL: InvalidRequestError,
    ErrorCode.EXPIRED: ExpiredError,
    ErrorCode.OVERLOADED: OverloadedError,
    ErrorCode.CANCELLED: RequestCancelled,
}


def error_for(event: Error) -> RequestFailed:
    return _ERRORS.get(event.code, RequestFailed)(event)


@dataclass(frozen=True, slots=True)
class Restart:
    """The generation restarted (new run_id): discard the text streamed so far."""

    id: str
    run_id: str


@dataclass(frozen=True, slots=True)
class GenerationResult:
    id: str
    text: str
    finish_reason: str
    model: str
    usage: Usage
    timings: Timings
    run_id: str
    restarts: int = 0
    requested_model: str | None = None  # set when a fallback model served (`model`) instead of this one
    degraded: bool = False  # the router's static reply: no model served


StreamEvent = Chunk | Done | Restart


@dataclass
class _Pending:
    queue: asyncio.Queue[Chunk | Done | Error] = field(default_factory=asyncio.Queue)


class FleetClient:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bootstrap: str | None = None,
        reply_topic: str | None = None,
        content_type: ContentType = ContentType.JSON,
        default_timeout_s: float = 120.0,
        api_key: str | None = None,
        tenant: str | None = None,
    ) -> None:
        """`api_key` (from `fleet tenants add`) goes in the `fleet-api-key` header of every request and
        cancel; `tenant` names the tenant it belongs to, which puts the default reply topic under the
        tenant's default reply prefix, `<prefix>.replies.<tenant>.<random>`: this client's own topic, which
        no other tenant may name. Without a tenant the default is the shared `<prefix>.replies` (an
        installation without tenants, as before)."""
        settings = settings or load_settings()
        if bootstrap:
            import msgspec

            settings = msgspec.structs.replace(
                settings, kafka=msgspec.structs.replace(settings.kafka, bootstrap_servers=bootstrap)
            )
        self.settings = settings
        self.topics = settings.kafka.topics
        self.api_key = api_key
        self.tenant = tenant
        default_reply = f"{self.topics.replies}.{tenant}.{uuid.uuid4().hex[:12]}" if tenant else self.topics.replies
        self.reply_topic = reply_topic or default_reply
        self.content_type = content_type
        self.default_timeout_s = default_timeout_s
        self.codec = Codec()
        self._pending: dict[str, _Pending] = {}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FleetClient:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            await ensure_topics(self.settings, {self.reply_topic: self.settings.kafka.reply_partitions})
        except KafkaError as exc:  # no permission to create topics on a managed cluster: it must exist
            log.warning("client.reply_topic_not_created", topic=self.reply_topic, error=repr(exc))
        self._producer = make_producer(self.settings, purpose=ProducerPurpose.REQUESTS)
        self._consumer = make_consumer(self.settings, group_id=None)
        try:
            await self._producer.start()
            await self._consumer.start()
        except BaseException:  # an unreachable broker: what was started is closed, nothing is left dangling
            await self.stop()
            raise
        await self._consumer.topics()
        parts = self._consumer.partitions_for_topic(self.reply_topic) or set()
        tps = [TopicPartition(self.reply_topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve positions now, so no reply to a request sent after start() is missed
            await self._consumer.position(tp)
        self._dispatcher = asyncio.create_task(self._dispatch(), name="fleet-client-dispatch")

    async def stop(self) -> None:
        if self._dispatcher:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()
        if self._producer:
            await self._producer.stop()

    async def _dispatch(self) -> None:
        assert self._consumer is not None
        async with Fetch(self._consumer, self.settings, name="client.replies") as fetch:
            while True:
                await self._dispatch_once(fetch)

    async def _dispatch_once(self, fetch: Fetch) -> None:
        for records in (await fetch.poll(timeout_ms=50, backoff_s=0.2)).values():
            for rec in records:
                try:
                    ev = self.codec.decode_reply(rec.value or b"", content_type_from_headers(rec.headers))
                except DecodeFailure:
                    continue  # not ours to judge: other tools may share the topic
                p = self._pending.get(ev.id)
                if p is not None:
                    p.queue.put_nowait(ev)

    # -- requests ------------------------------------------------------------
    def build_request(
        self,
        prompt: str | None = None,
        *,
        messages: list[dict[str, str]] | list[ChatMessage] | None = None,
        model: str = "auto",
        max_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
        timeout_s: float | None = None,
        priority: Priority = Priority.INTERACTIVE,
        tenant: str | None = None,
        metadata: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> Request:
        msgs = None
        if messages is not None:
            msgs = [
                m if isinstance(m, ChatMessage) else ChatMessage(role=m["role"], content=m["content"]) for m in messages
            ]
        timeout_s = self.default_timeout_s if timeout_s is None else timeout_s
        return Request(
            id=request_id or uuid.uuid4().hex,
            reply_to=self.reply_topic,
            prompt=prompt,
            messages=msgs,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=list(stop or []),
            seed=seed,
            timeout_ms=max(1, int(timeout_s * 1000)),
            priority=priority,
            tenant=tenant if tenant is not None else self.tenant,
            metadata=metadata or {},
        )

    async def send(self, req: Request) -> None:
        assert self._producer is not None, "call start() or use `async with` first"
        await self._producer.send_and_wait(
            self.topics.requests,
            self.codec.encode(req, self.content_type),
            key=req.id.encode(),
            headers=self._headers(self.content_type),
        )

    def _headers(self, ct: ContentType) -> list[tuple[str, bytes]]:
        headers = [(Headers.CONTENT_TYPE, ct.value.encode())]
        if self.api_key:
            headers.append((Headers.API_KEY, self.api_key.encode()))
        return headers

    async def stream(self, prompt: str | None = None, **kw: Any) -> AsyncIterator[StreamEvent]:
        """Yield Chunk events then the Done; a Restart marks a generation redone from scratch.

        Raises RequestFailed (or a subclass) on an `error` event and FleetTimeout when no
        terminal event arrives within `timeout_s` (the fleet enforces the same deadline).
        """
        req = self.build_request(prompt, **kw)
        async for ev in self.stream_request(req):
            yield ev

    async def stream_request(self, req: Request) -> AsyncIterator[StreamEvent]:
        pending = _Pending()
        self._pending[req.id] = pending
        deadline = time.monotonic() + (req.timeout_ms or self.default_timeout_s * 1000) / 1000 + 1.0
        run_id: str | None = None
        dead_runs: set[str] = set()
        next_seq = 0
        try:
            await self.send(req)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FleetTimeout(f"no answer to {req.id} within {req.timeout_ms} ms")
                try:
                    ev = await asyncio.wait_for(pending.queue.get(), left)
                except TimeoutError:
                    raise FleetTimeout(f"no answer to {req.id} within {req.timeout_ms} ms") from None
                if ev.run_id in dead_runs:
                    continue  # a late event of an abandoned run
                if isinstance(ev, Error) and not ev.run_id:
                    raise error_for(ev)  # refused before any generation (router or worker intake)
                if ev.run_id != run_id:
                    if run_id is not None:
                        dead_runs.add(run_id)
                        if next_seq:
                            yield Restart(req.id, ev.run_id)
                    run_id, next_seq = ev.run_id, 0
                seq = ev.seq if ev.seq is not None else next_seq
                if seq < next_seq:
                    continue  # a duplicate delivery of an event already seen
                next_seq = seq + 1
                if isinstance(ev, Error):
                    raise error_for(ev)
                yield ev
                if isinstance(ev, Done):
                    return
        finally:
            self._pending.pop(req.id, None)

    async def generate(self, prompt: str | None = None, **kw: Any) -> GenerationResult:
        """Final text with usage and timings; raises like `stream`."""
        restarts = 0
        async for ev in self.stream(prompt, **kw):
            if isinstance(ev, Restart):
                restarts += 1
            elif isinstance(ev, Done):
                return GenerationResult(
                    ev.id,
                    ev.text,
                    ev.finish_reason.value,
                    ev.model,
                    ev.usage,
                    ev.timings,
                    ev.run_id,
                    restarts,
                    ev.requested_model,
                    ev.degraded,
                )
        raise FleetError("stream ended without a terminal event")  # pragma: no cover - stream always returns Done

    async def cancel(self, request_id: str) -> None:
        """Ask every worker to stop this request; harmless for unknown or finished ids."""
        assert self._producer is not None
        await self._producer.send_and_wait(
            self.topics.control,
            self.codec.encode(Cancel(request_id)),
            key=request_id.encode(),
            headers=self._headers(ContentType.JSON),  # with tenants, workers act only on the sender's own
        )
