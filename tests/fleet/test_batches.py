"""fleet/batches.py: a raw record set read batch by batch, every bad batch a typed result (pure, no broker)."""

from __future__ import annotations

import struct

import pytest
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder

from fleet.batches import scan
from tests.bad_batches import BAD, CODECS, batch, fix_crc, garbage_compressed, unknown_codec

pytestmark = pytest.mark.unit


def at(raw: bytearray, base: int) -> bytes:
    """The batch as the broker serves it: with its base offset filled in."""
    out = bytearray(raw)
    struct.pack_into(">q", out, 0, base)
    return bytes(out)


@pytest.mark.parametrize("codec", list(CODECS))
def test_every_codec_decodes(codec: str) -> None:
    values = [b'{"id": "r%d", "prompt": "hello"}' % i for i in range(5)]
    s = scan(at(batch(values, codec, [("content-type", b"application/json")]), 40), "t", 3, 40)
    assert s.first_bad is None and not s.partial_tail
    (b,) = s.batches
    assert (b.first_offset, b.next_offset) == (40, 45)
    assert [r.value for r in b.records] == values
    assert [r.offset for r in b.records] == [40, 41, 42, 43, 44]
    r = b.records[0]
    assert (r.topic, r.partition, r.headers) == ("t", 3, (("content-type", b"application/json"),))
    assert r.serialized_value_size == len(values[0]) and r.serialized_key_size == -1


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_batch_between_good_ones_is_reported_and_the_rest_decode(kind: str) -> None:
    broken = at(BAD[kind]([b"c", b"d", b"e"]), 2)
    raw = at(batch([b"a", b"b"]), 0) + broken + at(batch([b"f"]), 5)
    s = scan(raw, "t", 0, 0)
    assert [(b.first_offset, b.next_offset) for b in s.batches] == [(0, 2), (2, 5), (5, 6)]
    good1, bad, good2 = s.batches
    assert good1.error is None and good2.error is None
    assert [r.value for r in good1.records + good2.records] == [b"a", b"b", b"f"]
    assert bad.error and not bad.records
    assert bad.raw == broken
    assert s.first_bad is bad


def test_reasons_say_what_is_wrong() -> None:
    assert scan(at(BAD["crc_mismatch"]([b"x"]), 0), "t", 0, 0).batches[0].error == "CRC mismatch"
    snappy = scan(at(garbage_compressed([b"x" * 50], "snappy"), 0), "t", 0, 0).batches[0].error or ""
    assert "snappy" in snappy and "do not decode" in snappy
    unknown = scan(at(unknown_codec([b"x"]), 0), "t", 0, 0).batches[0].error or ""
    assert "unknown codec id 5" in unknown


def test_records_before_the_fetch_offset_are_not_handed_over() -> None:
    s = scan(at(batch([b"a", b"b", b"c"]), 10), "t", 0, 12)
    assert [r.offset for r in s.batches[0].records] == [12]
    assert s.batches[0].next_offset == 13


def test_a_batch_cut_off_by_the_fetch_limit_is_left_for_the_next_fetch() -> None:
    whole = at(batch([b"a"]), 0)
    cut = at(batch([b"b" * 100]), 1)[:40]
    s = scan(whole + cut, "t", 0, 0)
    assert len(s.batches) == 1 and s.partial_tail
    assert scan(b"", "t", 0, 0).batches == [] and scan(b"\x00" * 11, "t", 0, 0).partial_tail


@pytest.mark.parametrize("length", [-1, 0, 4, 20])
def test_an_impossible_frame_length_is_one_bad_offset_and_ends_the_scan(length: int) -> None:
    raw = bytearray(at(batch([b"a"]), 7))
    struct.pack_into(">i", raw, 8, length)
    s = scan(bytes(raw) + at(batch([b"b"]), 8), "t", 0, 7)
    (bad,) = s.batches
    assert bad.error and "impossible" in bad.error
    assert (bad.first_offset, bad.next_offset) == (7, 8)


def test_an_unknown_record_format_is_reported() -> None:
    raw = bytearray(at(batch([b"a"]), 3))
    raw[16] = 9
    (bad,) = scan(bytes(fix_crc(raw)), "t", 0, 3).batches
    assert bad.error == "unknown record format (magic 9)" and bad.next_offset == 4


def test_a_control_batch_is_stepped_over_without_records() -> None:
    raw = bytearray(at(batch([b"a"]), 4))
    (attr,) = struct.unpack_from(">h", raw, 21)
    struct.pack_into(">h", raw, 21, attr | 0x20)
    (b,) = scan(bytes(fix_crc(raw)), "t", 0, 4).batches
    assert b.control and b.error is None and not b.records and b.next_offset == 5


@pytest.mark.parametrize("magic", [0, 1])
def test_legacy_message_sets_decode_and_a_bad_one_is_reported(magic: int) -> None:
    builder = LegacyRecordBatchBuilder(magic=magic, compression_type=0, batch_size=1 << 20)
    builder.append(0, timestamp=None if magic == 0 else 1000, key=b"k", value=b"old")
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, 9)
    (good,) = scan(bytes(raw), "t", 0, 9).batches
    assert good.error is None and [(r.offset, r.key, r.value) for r in good.records] == [(9, b"k", b"old")]
    raw[-1] ^= 0xFF
    (bad,) = scan(bytes(raw), "t", 0, 9).batches
    assert bad.error == "CRC mismatch" and (bad.first_offset, bad.next_offset) == (9, 10)
