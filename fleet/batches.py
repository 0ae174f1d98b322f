"""Raw Kafka record sets, read batch by batch, where a batch that cannot be decoded is a result and not an
exception. Pure: bytes in, typed batches out; no I/O.

A fetch response's record set is a run of frames that all begin the same way, whatever the message format
(v0/v1 message sets and v2 record batches alike): an int64 offset and an int32 length, then (at byte 16)
the magic byte. The frame alone says which offsets a batch covers (v2: `baseOffset` and `lastOffsetDelta`
in the fixed header; v0/v1: the wrapper's offset is its last), so a consumer can step past a batch it cannot
decode (an unsupported or unknown codec, a CRC mismatch, records cut short) without decoding it. aiokafka
raises in that case and its position stays before the batch, so every later fetch of the partition fails
the same way: this module is what lets `fleet.fetch` move on and keep the bytes for the DLQ.

v2 header layout (bytes): baseOffset int64 @0, batchLength int32 @8, partitionLeaderEpoch int32 @12,
magic int8 @16, crc uint32 @17, attributes int16 @21, lastOffsetDelta int32 @23, ... records @61.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.legacy_records import LegacyRecordBatch
from aiokafka.structs import ConsumerRecord

_LOG_OVERHEAD = 12  # offset int64 + length int32
_V2_HEADER = 61
_CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


@dataclass(frozen=True, slots=True)
class Batch:
    """One frame of a record set: the offsets it covers, and its records or why they could not be read.

    `next_offset` is where the partition continues after this batch. `records` holds the decoded records
    at or past the fetch offset (earlier ones belong to the same batch but were already consumed); `error`
    is None for a batch that decoded. `raw` is the frame's bytes as the broker sent them."""

    first_offset: int
    next_offset: int
    raw: bytes
    records: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)
    error: str | None = None
    control: bool = False


@dataclass(frozen=True, slots=True)
class Scan:
    """What a record set holds: its whole batches, in order, and whether bytes were left over after them
    (a batch the fetch's byte limit cut off, which the next fetch reads whole)."""

    batches: list[Batch]
    partial_tail: bool

    @property
    def first_bad(self) -> Batch | None:
        return next((b for b in self.batches if b.error is not None), None)


def codec_name(codec_id: int) -> str:
    return _CODECS.get(codec_id, f"unknown codec id {codec_id}")


def scan(raw: bytes, topic: str, partition: int, fetch_offset: int) -> Scan:
    """Read `raw` (one partition's record set from a fetch at `fetch_offset`) into batches.

    Never raises on the content: a frame whose bytes do not decode is a Batch with `error` set. A frame
    whose length field is impossible (negative, or shorter than its own header) ends the scan there with
    that frame's rest as one bad batch covering one offset, so the caller still moves on."""
    view = memoryview(raw)
    out: list[Batch] = []
    pos = 0
    while len(view) - pos >= _LOG_OVERHEAD + 5:
        base, length = struct.unpack_from(">qi", view, pos)
        end = pos + _LOG_OVERHEAD + length
        magic = view[pos + 16]
        if length < 5 or (magic >= 2 and length < _V2_HEADER - _LOG_OVERHEAD):
            frame = bytes(view[pos:])
            out.append(Batch(base, max(base, fetch_offset) + 1, frame, error=f"frame length {length} is impossible"))
            return Scan(out, False)
        if end > len(view):
            break  # cut off by the fetch's byte limit: read whole on the next fetch
        out.append(_batch(bytes(view[pos:end]), base, magic, topic, partition, fetch_offset))
        pos = end
    return Scan(out, pos < len(view))


def _batch(frame: bytes, base: int, magic: int, topic: str, partition: int, fetch_offset: int) -> Batch:
    if magic >= 2:
        if magic > 2:
            return Batch(base, base + 1, frame, error=f"unknown record format (magic {magic})")
        (last_delta,) = struct.unpack_from(">i", frame, 23)
        (attributes,) = struct.unpack_from(">h", frame, 21)
        next_offset = base + max(0, last_delta) + 1
        try:
            batch = DefaultRecordBatch(frame)
            if not batch.validate_crc():
                return Batch(base, next_offset, frame, error="CRC mismatch")
            if batch.is_control_batch:
                return Batch(base, next_offset, frame, control=True)
            records = [_record(topic, partition, r) for r in batch if r.offset >= fetch_offset]
        except Exception as exc:  # any decoding failure is this batch's outcome, never the consumer's
            return Batch(base, next_offset, frame, error=_why(exc, attributes & 0x07))
        return Batch(base, next_offset, frame, records)
    # v0/v1: one message, or a compressed wrapper whose offset is its last inner offset
    next_offset = base + 1
    try:
        legacy = LegacyRecordBatch(frame, magic)
        if not legacy.validate_crc():
            return Batch(base, next_offset, frame, error="CRC mismatch")
        records = [_record(topic, partition, r) for r in legacy if r.offset >= fetch_offset]
    except Exception as exc:
        return Batch(base, next_offset, frame, error=_why(exc, None))
    first = records[0].offset if records else base
    return Batch(first, next_offset, frame, records)


def _why(exc: BaseException, codec_id: int | None) -> str:
    codec = f" ({codec_name(codec_id)})" if codec_id else ""
    return f"records do not decode{codec}: {type(exc).__name__}: {exc}"[:500]


def _record(topic: str, partition: int, r: Any) -> ConsumerRecord[bytes, bytes]:
    """A ConsumerRecord as aiokafka's own fetcher builds it from a decoded record (same fields, same sizes)."""
    key, value = r.key, r.value
    return ConsumerRecord(
        topic,
        partition,
        r.offset,
        r.timestamp,
        r.timestamp_type,
        key,
        value,
        r.checksum,
        len(key) if key is not None else -1,
        len(value) if value is not None else -1,
        tuple(r.headers),
    )
