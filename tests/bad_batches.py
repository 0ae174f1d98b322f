"""Hand-built record batches, good and bad, and a raw produce that puts them on a partition as they are (no
client library in between would write a batch it cannot read back)."""

from __future__ import annotations

import struct
from collections.abc import Callable

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
_ATTRIBUTES, _CRC, _CRC_FROM, _RECORDS_AT = 21, 17, 21, 61


def batch(values: list[bytes], codec: str = "none", headers: list[tuple[str, bytes]] | None = None) -> bytearray:
    """A v2 record batch of `values` (base offset 0: the broker assigns offsets)."""
    b = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=CODECS[codec],
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 22,
    )
    for i, v in enumerate(values):
        b.append(i, timestamp=None, key=None, value=v, headers=list(headers or []))
    return bytearray(b.build())


def fix_crc(raw: bytearray) -> bytearray:
    """Recompute the batch's CRC-32C (over attributes to the end), so only what we broke is broken."""
    struct.pack_into(">I", raw, _CRC, calc_crc32c(bytes(raw[_CRC_FROM:])))
    return raw


def crc_mismatch(values: list[bytes]) -> bytearray:
    raw = batch(values)
    raw[-1] ^= 0xFF  # a flipped bit in the last record, CRC left as it was
    return raw


def garbage_compressed(values: list[bytes], codec: str) -> bytearray:
    """A batch that says `codec` whose compressed bytes are garbage, with a correct CRC."""
    raw = batch(values, codec)
    raw[_RECORDS_AT:] = bytes((i * 37 + 11) % 256 for i in range(len(raw) - _RECORDS_AT))
    return fix_crc(raw)


def unknown_codec(values: list[bytes], codec_id: int = 5) -> bytearray:
    """A batch whose attributes name a codec Kafka does not define, with a correct CRC."""
    raw = batch(values)
    (attr,) = struct.unpack_from(">h", raw, _ATTRIBUTES)
    struct.pack_into(">h", raw, _ATTRIBUTES, (attr & ~0x07) | codec_id)
    return fix_crc(raw)


def truncated_records(values: list[bytes]) -> bytearray:
    """A whole frame whose first record claims more bytes than the batch holds (records cut short), with a
    correct CRC: what a client bug or a torn write looks like. Nothing of it decodes."""
    raw = batch(values)
    raw[_RECORDS_AT] = 0x7E  # zigzag varint 63: the first record's length, past the end of the batch
    return fix_crc(raw)


BAD: dict[str, Callable[[list[bytes]], bytearray]] = {
    "crc_mismatch": crc_mismatch,
    "garbage_snappy": lambda v: garbage_compressed(v, "snappy"),
    "garbage_zstd": lambda v: garbage_compressed(v, "zstd"),
    "truncated_records": truncated_records,
}


async def produce_raw(bootstrap: str, tp: TopicPartition, raw: bytes | bytearray) -> int:
    """Write one batch's bytes to `tp` as they are; returns the base offset the broker gave it."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client.force_metadata_update()
        node = client.cluster.leader_for_partition(tp)
        assert node is not None, f"no leader for {tp}"
        resp = await client.send(node, ProduceRequest(None, -1, 10_000, [(tp.topic, [(tp.partition, bytes(raw))])]))
        (_topic, parts) = resp.topics[0]
        error, offset = parts[0][1], parts[0][2]
        assert error == 0, f"the broker refused the batch (error {error})"
        return int(offset)
    finally:
        await client.close()
