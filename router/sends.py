"""Verdicts into records: the router's pipeline runs on one intake record and its outcome becomes the sends that
carry it out (a forward to the model topic, a move to the tenant's owner, an error event and a DLQ copy, a
reply the router answers itself). No Kafka here: router/delivery.py sends them and follows up on what fails.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from aiokafka import ConsumerRecord

from contracts.codec import Codec, ContentType
from contracts.messages import Cancel, Error, ErrorCode
from contracts.topics import Headers
from contracts.validation import is_topic_name
from fleet.record_mac import Kind, record_mac
from fleet.records import Header, dlq_record
from fleet.settings import Settings
from router.pipeline import Pipeline
from router.stages.base import Answer, Context, Drop, Forward, Hold, Move, Outcome, Reject, RelayCancel, verdict_code
from router.stages.validate import InternalTopics

log = structlog.get_logger(__name__)

UNDELIVERABLE = "undeliverable"  # DLQ code of a record whose refusal could not be written to its reply_to


LOG_APPEND_TIME = 1  # a record's timestamp_type when the broker stamped it (topic message.timestamp.type)


def broker_timestamp_ms(rec: ConsumerRecord[Any, Any]) -> int:
    """When the record reached the broker, where the broker says so (a topic with message.timestamp.type
    LogAppendTime: fleet_topics creates the intake topics that way); 0 otherwise. A deadline then counts from the
    router's receipt, as documented: a producer whose clock runs behind would have had its requests expire at
    once, one running ahead would have bought time."""
    return int(rec.timestamp or 0) if rec.timestamp_type == LOG_APPEND_TIME else 0


@dataclass(slots=True)
class RouterStats:
    """Every outcome the loop reaches, counted once (the health file and the stop log report these)."""

    consumed: int = 0
    forwarded: int = 0
    rejected: int = 0
    duplicates: int = 0
    overloaded: int = 0
    dlq: int = 0  # DLQ copies acknowledged
    undeliverable: int = 0  # refusals that could not be written (a DLQ copy records each) and DLQ copies lost
    redone: int = 0  # batches sought back after a retriable send failure
    committed: int = 0  # records whose offsets the broker acknowledged as committed
    commits_dropped: int = 0  # commits refused after a rebalance: the partition's owner redoes them
    answered: int = 0  # replies the router sent itself
    moved: int = 0  # records sent on to the router that owns their tenant's counters
    held: int = 0  # batch requests held for their tenant's rate (each counted once per hold)
    cancels: int = 0  # tenants' cancels relayed from the intake to the control topic
    undecodable: int = 0  # intake batches nothing could decode: copied raw to the DLQ and stepped past
    verdicts: dict[str, int] = field(default_factory=dict)  # "<stage>.<code>": every verdict of the pipeline
    forwards: dict[str, dict[str, int]] = field(default_factory=dict)  # model -> tier ("": named) -> forwards

    def verdict(self, stage: str, outcome: Outcome) -> None:
        key = f"{stage}.{verdict_code(outcome)}"
        self.verdicts[key] = self.verdicts.get(key, 0) + 1

    def reached(self, decision: Outcome | None) -> None:
        """A record reached its outcome: every send of it acknowledged (or given up as undeliverable). Counted
        here once, from the final decision (a forward that could never be sent is counted as the refusal it
        became); None: it reached its outcome in an earlier try. A held request is counted when released."""
        if isinstance(decision, Forward):
            self.forwarded += 1
            tiers, tier = self.forwards.setdefault(decision.model, {}), decision.tier or ""
            tiers[tier] = tiers.get(tier, 0) + 1
        elif isinstance(decision, Reject):
            if decision.code is ErrorCode.OVERLOADED:
                self.overloaded += 1
            else:
                self.rejected += 1
        elif isinstance(decision, Move):
            self.moved += 1
        elif isinstance(decision, Drop):
            self.duplicates += 1
        elif isinstance(decision, Answer):
            self.answered += 1
        elif isinstance(decision, RelayCancel):
            self.cancels += 1


class SendKind(enum.StrEnum):
    FORWARD = "forward"
    MOVE = "move"
    REPLY = "reply"
    DLQ = "dlq"
    CONTROL = "control"  # a tenant's cancel relayed to the control topic


class Send(msgspec.Struct):  # (structs: one or two per record, several times cheaper to build than a dataclass)
    kind: SendKind
    topic: str
    value: bytes
    key: bytes | None
    headers: list[Header]
    request_id: str | None = None
    model: str | None = None
    tenant: str | None = None  # a forward's authenticated tenant: with the id, its dedup key
    partition: int | None = None  # a move goes to the owner's partition


class Plan(msgspec.Struct):
    """What one record needs done, and how far it got."""

    rec: ConsumerRecord[Any, Any]
    decision: Outcome | None  # None: reached its outcome in an earlier try of this batch
    sends: list[Send] = msgspec.field(default_factory=list)
    failures: list[tuple[Send, BaseException]] = msgspec.field(default_factory=list)


class Sends:
    """Runs the pipeline on a record and builds its sends."""

    def __init__(self, settings: Settings, pipeline: Pipeline, codec: Codec, stats: RouterStats) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.codec = codec
        self.stats = stats
        self.internal = InternalTopics(settings)
        self.bad_topics: dict[str, float] = {}  # reply topic -> monotonic time until which it is not tried
        # each forward's decision is a debug line: below debug, not even the call is made (it cost ~3% of a
        # record's time through structlog's lazy proxy)
        self.log_forwards = settings.debug
        self.mac = record_mac(settings.kafka.record_key)  # forwards carry one: workers serve only those

    def plan(self, rec: ConsumerRecord[Any, Any], now_ms: int, ctx: Context | None = None) -> Plan:
        """Run the pipeline on one record and turn its outcome into sends (counted when they are acknowledged:
        RouterStats.reached)."""
        if ctx is None:
            headers, topic = list(rec.headers or ()), rec.topic or ""
            ts = broker_timestamp_ms(rec)
            ctx = Context(rec.value, headers, ts, now_ms, topic=topic, partition=rec.partition)
        stage, outcome = self.pipeline.run(ctx)
        self.stats.verdict(stage, outcome)
        if isinstance(outcome, Forward):
            return Plan(rec, outcome, self.forward_sends(outcome, now_ms))
        if isinstance(outcome, Reject):
            return Plan(rec, outcome, self.reject_sends(outcome, rec))
        if isinstance(outcome, Move):
            headers = [(k, v) for k, v in (rec.headers or ()) if k != Headers.API_KEY]  # the topic names it there
            key, where = outcome.tenant.encode(), outcome.partition
            return Plan(rec, outcome, [Send(SendKind.MOVE, outcome.topic, rec.value, key, headers, partition=where)])
        if isinstance(outcome, Hold):
            return Plan(rec, outcome)
        if isinstance(outcome, RelayCancel):
            return Plan(rec, outcome, [self.cancel_send(outcome)])
        if isinstance(outcome, Drop):
            log.info("router.duplicate", request_id=outcome.request_id, offset=rec.offset, stage=stage)
            return Plan(rec, outcome)
        return Plan(rec, outcome, [self.answer_send(outcome)])

    def forward_sends(self, d: Forward, now_ms: int) -> list[Send]:
        req, ct = d.request, d.content_type
        tenant = d.tenant
        headers: list[Header] = [
            (Headers.CONTENT_TYPE, ct.value.encode()),
            (Headers.INTAKE_MS, str(now_ms).encode()),  # the router's own clock, not the producer's
        ]
        if d.tier:
            headers.append((Headers.TIER, d.tier.encode()))
        if d.requested_model:
            headers.append((Headers.REQUESTED_MODEL, d.requested_model.encode()))
        value, key = self.codec.encode(req, ct), req.id.encode()
        if self.mac is not None:
            headers.append(self.mac.header(Kind.REQUEST, key, value))
        if self.log_forwards:
            log.debug("router.forward", request_id=req.id, model=d.model, tier=d.tier, score=d.score, signals=d.signals)
        return [
            Send(SendKind.FORWARD, topic, value, key, list(headers), request_id=req.id, model=d.model, tenant=tenant)
            for topic in d.topics
        ]

    def cancel_send(self, c: RelayCancel) -> Send:
        """The cancel on the control topic, keyed by the tenant it authenticated as and signed over key and value
        (workers accept a relayed cancel only so: it stops only that tenant's runs of the id)."""
        key, value = c.tenant.encode(), self.codec.encode(Cancel(id=c.request_id), ContentType.JSON)
        headers: list[Header] = [(Headers.CONTENT_TYPE, ContentType.JSON.value.encode())]
        if self.mac is not None:
            headers.append(self.mac.header(Kind.CANCEL, key, value))
        log.info("router.cancel", request_id=c.request_id[:200], tenant=c.tenant)
        return Send(SendKind.CONTROL, self.settings.kafka.topics.control, value, key, headers, tenant=c.tenant)

    def answer_send(self, a: Answer) -> Send:
        ct = a.content_type
        rid = a.request_id[:200]
        return Send(
            SendKind.REPLY,
            a.reply_to,
            self.codec.encode(a.event, ct),
            rid.encode("utf-8", "replace"),
            [(Headers.CONTENT_TYPE, ct.value.encode())],
            request_id=rid,
        )

    def reject_sends(self, d: Reject, rec: ConsumerRecord[Any, Any]) -> list[Send]:
        """An error event where the sender can be addressed, and a DLQ copy for bad input."""
        log.info(
            "router.reject",
            request_id=d.request_id,
            code=d.code.value,
            reason=d.message[:200],
            dlq=d.to_dlq,
            offset=rec.offset,
        )
        sends: list[Send] = []
        if d.request_id and d.reply_to and is_topic_name(d.reply_to) and d.reply_to not in self.internal:
            if self.bad_topics.get(d.reply_to, 0.0) > time.monotonic():
                sends.append(self.undeliverable(rec, d.reply_to, "the topic failed for good recently"))
            else:
                try:
                    ct = ContentType(d.content_type)
                except ValueError:
                    ct = ContentType.JSON
                rid = d.request_id[:200]
                event = Error(
                    id=rid,
                    code=d.code,
                    message=d.message[:2000],
                    retriable=d.code.retriable,
                    retry_after_ms=d.retry_after_ms,
                )
                sends.append(
                    Send(
                        SendKind.REPLY,
                        d.reply_to,
                        self.codec.encode(event, ct),
                        rid.encode("utf-8", "replace"),
                        [(Headers.CONTENT_TYPE, ct.value.encode())],
                        request_id=rid,
                    )
                )
        if d.to_dlq:
            sends.append(self.dlq(rec, d.code.value, d.message))
        return sends

    def undeliverable(self, rec: ConsumerRecord[Any, Any], topic: str, why: str) -> Send:
        self.stats.undeliverable += 1
        log.warning("router.undeliverable", reply_to=topic[:300], error=why[:300], offset=rec.offset)
        send = self.dlq(rec, UNDELIVERABLE, f"the refusal could not be written to {topic[:249]!r}: {why}")
        send.headers.append((Headers.UNDELIVERABLE, topic.encode("utf-8", "replace")[:300]))
        return send

    def dlq(self, rec: ConsumerRecord[Any, Any], code: str, reason: str) -> Send:
        value, key, headers = dlq_record(
            rec.value,
            rec.key,
            rec.headers,
            rec.topic,
            rec.partition,
            rec.offset,
            code,
            reason,
            # room for the undeliverable header that may be added to this copy
            self.settings.kafka.max_request_bytes - 512,
        )
        return Send(SendKind.DLQ, self.settings.kafka.topics.dlq, value, key, headers)
