"""Record builders shared by router and worker: one DLQ record shape, sized to fit.

A DLQ copy must always be writable: a copy of a record that was refused for being too large, with the
fleet's extra headers added, would be refused again and leave the original without an outcome. So the
builder measures the record as the producer will (aiokafka's own estimate) and, when it is over
`max_bytes`, truncates the value (and, if they alone are too big, drops the original headers and cuts
the key), saying so in headers. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from contracts.topics import Headers

Header = tuple[str, bytes | None]

# what a record carries besides key, value and headers, with room to spare (batch header, varints)
_SLACK_BYTES = 128
_MAX_KEY_BYTES = 1024
_MAX_REASON_BYTES = 1000
_KEY = Headers.API_KEY.lower()


def record_size(key: bytes | None, value: bytes | None, headers: list[Header]) -> int:
    """Bytes the producer counts against `max_request_size` for one record."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


def dlq_record(
    value: bytes | None,
    key: bytes | None,
    headers: Iterable[Header] | None,
    topic: str,
    partition: int,
    offset: int,
    code: str,
    reason: str,
    max_bytes: int,
) -> tuple[bytes, bytes | None, list[Header]]:
    """(value, key, headers) of the DLQ copy of one record, at most `max_bytes` as the producer counts.

    The original headers are kept (minus any fleet-error/source headers, which this copy sets afresh, and
    minus `fleet-api-key` under any spelling: a caller's secret is never copied anywhere);
    `fleet-error-code` and `fleet-error-reason` say why, `fleet-source-*` where it came from. When the copy
    had to be cut, `fleet-dlq-truncated` holds the original value's length in bytes and, where the
    original headers had to go, `fleet-dlq-headers-dropped` their count."""
    ours: list[Header] = [
        (Headers.ERROR_CODE, code.encode("utf-8", "replace")[:200]),
        (Headers.ERROR_REASON, reason.encode("utf-8", "replace")[:_MAX_REASON_BYTES]),
        (Headers.SOURCE_TOPIC, topic.encode("utf-8", "replace")[:300]),
        (Headers.SOURCE_PARTITION, str(partition).encode()),
        (Headers.SOURCE_OFFSET, str(offset).encode()),
    ]
    own_names = {name for name, _ in ours} | {Headers.DLQ_TRUNCATED, Headers.DLQ_HEADERS_DROPPED}
    original = [
        (k, None if v is None else bytes(v))
        for k, v in (headers or ())
        if isinstance(k, str) and k not in own_names and not k.startswith("fleet-error") and k.lower() != _KEY
    ]
    body = value or b""
    out = original + ours
    if record_size(key, body, out) + _SLACK_BYTES <= max_bytes:
        return body, key, out
    if record_size(key, b"", original) > max_bytes // 4:
        ours.append((Headers.DLQ_HEADERS_DROPPED, str(len(original)).encode()))
        original = []
    if key is not None and len(key) > _MAX_KEY_BYTES:
        key = key[:_MAX_KEY_BYTES]
    ours.append((Headers.DLQ_TRUNCATED, str(len(body)).encode()))
    out = original + ours
    room = max_bytes - record_size(key, b"", out) - _SLACK_BYTES
    return body[: max(0, room)], key, out
