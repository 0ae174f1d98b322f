"""The Kafka side of tenant accounts (router/accounts/account.py; the stages read them through view.py): load a
tenant's counters when this router is assigned partition 0 of its intake topic, settle them from `llm.usage`,
and snapshot them to the compacted `llm.tenants.state` topic (keyed by tenant) before the intake offset is
committed.

Why a snapshot and not a replay of `llm.usage` alone: rate buckets and open reservations are not in the
usage topic, and replaying days of usage at every takeover would not scale. The snapshot carries, with the
counters, the intake offset it reflects (`next_offset`: the new owner starts there, so no decision is made
twice) and the usage offsets it has applied (`usage_next`: the new owner replays usage from there, so no
settlement is lost or applied twice). A request decided again after a crash (between its forward and the next
snapshot) finds its reservation in the snapshot or takes one; the ledger is keyed by request id, so it is
counted once either way. A stale owner's late write loses: each takeover raises the snapshot's `epoch`, and
a load takes the highest.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from contracts.codec import Codec, DecodeFailure
from fleet.fetch import Fetch
from fleet.kafka import make_consumer, with_retry
from fleet.record_mac import Kind, record_mac
from fleet.settings import Settings, TenantSettings
from router.accounts.account import STATE_VERSION, Account, TenantState

if TYPE_CHECKING:
    from router.accounts.view import AccountsView

log = structlog.get_logger(__name__)

_STATE = msgspec.msgpack.Decoder(TenantState)
_ENCODE = msgspec.msgpack.Encoder()


def _ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Snapshot:
    epoch: int
    offset: int
    state: TenantState


def keep_newest(latest: dict[str, Snapshot], key: bytes | None, value: bytes | None, offset: int) -> bool:
    """Keep, per tenant, the newest snapshot read from the state topic: the highest epoch, then the latest
    offset. Returns False for a record that is not a snapshot (no key, a tombstone, bytes that do not decode,
    a key that is not the snapshot's tenant), which is skipped: whatever is on the topic, a takeover goes on."""
    if not key or not value:
        return False
    try:
        state = _STATE.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    if key != state.tenant.encode("utf-8", "surrogatepass"):
        return False
    prev = latest.get(state.tenant)
    if prev is None or (state.epoch, offset) >= (prev.epoch, prev.offset):
        latest[state.tenant] = Snapshot(state.epoch, offset, state)
    return True


class TenantStore:
    def __init__(self, settings: Settings, accounts: AccountsView) -> None:
        self.settings = settings
        self.topics = settings.kafka.topics
        self.accounts = accounts
        self._codec = Codec()
        self._mac = record_mac(settings.kafka.record_key)  # set: only a worker's usage record settles anything
        self.forged_usage = 0
        self._by_name = {t.name: t for t in settings.tenants if t.limited}
        self._latest: dict[str, Snapshot] = {}  # tenant -> its newest snapshot read so far
        self._state: AIOKafkaConsumer | None = None
        self._usage: AIOKafkaConsumer | None = None
        self._fetches: dict[str, Fetch] = {}  # "state", "usage": the two consumers, read past undecodable batches
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()  # loads read the state consumer one at a time
        self.saved = 0
        self.settled = 0
        self.save_failures = 0

    @property
    def counts(self) -> dict[str, int]:
        """For the router's health file and stop log."""
        return {
            "tenant_snapshots": self.saved,
            "tenant_snapshot_failures": self.save_failures,
            "settled": self.settled,
            "usage_not_signed": self.forged_usage,
        }

    @property
    def enabled(self) -> bool:
        return bool(self._by_name)

    def owned_partition(self, tp: TopicPartition) -> TenantSettings | None:
        """The limited tenant whose counters come with this intake partition, if any."""
        if tp.partition != 0:
            return None
        name = self.topics.tenant_of_intake(tp.topic)
        return self._by_name.get(name) if name is not None else None

    async def start(self, producer: AIOKafkaProducer, stop: asyncio.Event) -> None:
        self._producer = producer
        if not self.enabled:
            return
        self._state = make_consumer(self.settings, group_id=None, enable_auto_commit=False)
        self._usage = make_consumer(self.settings, group_id=None, enable_auto_commit=False)
        self._fetches = {
            "state": Fetch(self._state, self.settings, name="router.tenant_state"),
            "usage": Fetch(self._usage, self.settings, name="router.usage"),
        }
        await with_retry("router.state.start", self._state.start, stop=stop)
        await with_retry("router.usage.start", self._usage.start, stop=stop)
        state, usage = self._state, self._usage
        await with_retry("router.state.assign", lambda: self._assign_all(state, self.topics.tenant_state), stop=stop)
        await with_retry("router.usage.assign", lambda: self._assign_all(usage, self.topics.usage), stop=stop)
        ends = await with_retry("router.usage.ends", lambda: usage.end_offsets(list(usage.assignment())), stop=stop)
        for tp, end in ends.items():  # settlements before this router owned anything are the snapshots' to replay
            usage.seek(tp, end)

    async def stop(self) -> None:
        for f in self._fetches.values():
            await f.stop()
        for c in (self._state, self._usage):
            if c is not None:
                await c.stop()

    @staticmethod
    async def _assign_all(consumer: AIOKafkaConsumer, topic: str) -> None:
        """Read every partition of `topic`; a topic the broker does not know yet is retried (with_retry)."""
        await consumer.topics()
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise UnknownTopicOrPartitionError(f"topic {topic!r} does not exist (fleet_topics creates it)")
        consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])

    # -- takeover and hand-over ---------------------------------------------------------------------------
    async def take_over(self, tenant: TenantSettings, committed: int | None, stop: asyncio.Event) -> int:
        """Load the tenant's last snapshot (reading the state topic to its end) and own its account here.
        Returns the intake offset to start from: past everything the snapshot reflects."""
        assert self._state is not None and self._usage is not None
        async with self._lock:
            await with_retry("router.state.read", self._read_state_to_end, stop=stop)
        now = _ms()
        found = self._latest.get(tenant.name)
        state = found.state if found is not None else None
        if state is None or state.version != STATE_VERSION:
            account = Account.new(tenant, now)
            usage = self._usage
            ends = await with_retry("router.usage.ends", lambda: usage.end_offsets(list(usage.assignment())), stop=stop)
            account.state.usage_next = {tp.partition: end for tp, end in ends.items()}
            account.state.next_offset = committed or 0
            account.state.epoch = (found.epoch + 1) if found is not None else 1
        else:
            state.epoch += 1
            account = Account(tenant, state)
        account.dirty = True
        for tp in self._usage.assignment():  # replay the usage this account has not applied yet
            want = account.state.usage_next.get(tp.partition, 0)
            if want < await self._usage.position(tp):
                self._usage.seek(tp, want)
        # last, with no await before the caller seeks the intake: a batch of the partition fetched meanwhile
        # waits (router/intake.py) rather than being decided without the counters or before the seek
        self.accounts.accounts[tenant.name] = account
        start = max(committed or 0, account.state.next_offset)
        log.info(
            "router.tenant_owned",
            tenant=tenant.name,
            epoch=account.state.epoch,
            from_offset=start,
            committed=committed,
            pending=len(account.state.ledger.pending),
            day_tokens=account.state.ledger.day.tokens,
        )
        return start

    async def hand_over(self, tenant: str) -> None:
        """The partition left this router: a last snapshot, then the account goes."""
        account = self.accounts.accounts.get(tenant)
        if account is None:
            return
        try:
            await self.save(account, account.state.next_offset)
        except KafkaError as exc:  # the new owner replays usage from the last snapshot: nothing is lost
            log.warning("router.tenant_state_handover_failed", tenant=tenant, error=repr(exc))
        self.accounts.accounts.pop(tenant, None)

    async def _read_state_to_end(self) -> None:
        assert self._state is not None
        consumer = self._state
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while True:
            behind = [tp for tp, end in ends.items() if await consumer.position(tp) < end]
            if not behind:
                return
            batch = await self._fetches["state"].getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    if not keep_newest(self._latest, rec.key, rec.value, rec.offset):
                        log.warning("router.tenant_state_skipped", partition=rec.partition, offset=rec.offset)

    # -- snapshots -----------------------------------------------------------------------------------------
    async def save(self, account: Account, next_offset: int) -> None:
        """Write the account's snapshot reflecting every intake record before `next_offset` (raises KafkaError
        when the broker does not take it: the caller then does not commit)."""
        assert self._producer is not None
        if self.accounts.accounts.get(account.settings.name) is not account:
            raise KafkaError(f"tenant {account.settings.name!r} is no longer owned here")
        s = account.state
        s.next_offset = max(s.next_offset, next_offset)
        s.written_ms = _ms()
        was_dirty, account.dirty = account.dirty, False
        try:
            await self._producer.send_and_wait(self.topics.tenant_state, _ENCODE.encode(s), key=s.tenant.encode())
        except Exception:
            account.dirty = was_dirty or account.dirty
            self.save_failures += 1
            raise
        self.saved += 1

    # -- settlement ----------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Settle owned accounts from the usage topic, release long-expired reservations, and snapshot what
        changed every `tenant_state_interval_ms`. Supervised by the router's loop."""
        if not self.enabled:
            await stop.wait()
            return
        assert self._usage is not None
        interval_s = self.settings.router.tenant_state_interval_ms / 1000
        last_save = time.monotonic()
        while not stop.is_set():
            try:
                batch = await self._fetches["usage"].getmany(timeout_ms=200, max_records=2000)
            except KafkaError as exc:
                log.warning("router.usage_poll_failed", error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            now = _ms()
            for tp, records in batch.items():
                for rec in records:
                    if self._mac is not None and not self._mac.verify(
                        Kind.USAGE, rec.key if isinstance(rec.key, bytes) else None, rec.value, rec.headers
                    ):
                        self.forged_usage += 1  # a zero-cost record settling a reservation spent without limit
                        log.warning("router.usage_not_signed", partition=tp.partition, offset=rec.offset)
                        continue
                    self._settle(tp.partition, rec.offset, rec.value, now)
            for account in list(self.accounts.accounts.values()):
                account.expire(now)
            if time.monotonic() - last_save >= interval_s:
                last_save = time.monotonic()
                for account in list(self.accounts.accounts.values()):
                    if account.dirty:
                        try:
                            await self.save(account, account.state.next_offset)
                        except KafkaError as exc:
                            name = account.settings.name
                            log.warning("router.tenant_state_save_failed", tenant=name, error=repr(exc))

    def _settle(self, partition: int, offset: int, value: bytes | None, now_ms: int) -> None:
        try:
            u = self._codec.decode_usage(value or b"")
        except DecodeFailure:
            log.warning("router.usage_undecodable", partition=partition, offset=offset)
            return
        account = self.accounts.accounts.get(u.tenant) if u.tenant is not None else None
        if account is not None and account.settle(
            partition, offset, u.id, u.prompt_tokens + u.completion_tokens, u.cost, u.ts_ms, now_ms
        ):
            self.settled += 1
