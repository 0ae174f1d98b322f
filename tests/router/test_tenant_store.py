"""Reading the tenant-state topic (router/accounts/store.py `keep_newest`): the newest snapshot per tenant wins by
epoch, then offset, and nothing on the topic (no key, a tombstone, garbage, a huge value, a snapshot filed
under another tenant's key) stops a takeover or replaces a real snapshot."""

from __future__ import annotations

import msgspec

from router.accounts.account import TenantState
from router.accounts.budget import Ledger
from router.accounts.store import Snapshot, keep_newest

T0 = 1_790_000_000_000


def snap(tenant: str, epoch: int) -> bytes:
    return msgspec.msgpack.encode(TenantState(tenant, Ledger.new(T0), epoch=epoch))


def test_the_highest_epoch_wins_then_the_latest_offset() -> None:
    latest: dict[str, Snapshot] = {}
    assert keep_newest(latest, b"acme", snap("acme", 2), 10)
    assert keep_newest(latest, b"acme", snap("acme", 1), 11)  # a stale owner's late write: read, not kept
    assert (latest["acme"].epoch, latest["acme"].offset) == (2, 10)
    assert keep_newest(latest, b"acme", snap("acme", 2), 12)
    assert latest["acme"].offset == 12
    assert keep_newest(latest, b"beta", snap("beta", 1), 13) and set(latest) == {"acme", "beta"}


def test_records_that_are_not_snapshots_are_skipped_and_change_nothing() -> None:
    latest: dict[str, Snapshot] = {}
    keep_newest(latest, b"acme", snap("acme", 3), 1)
    for key, value in [
        (None, snap("acme", 9)),  # no key
        (b"acme", None),  # a tombstone
        (b"acme", b""),
        (b"acme", b"\xff\x00garbage"),
        (b"acme", b"\x00" * 2_000_000),  # huge
        (b"acme", msgspec.msgpack.encode({"tenant": "acme", "epoch": "nine"})),  # wrong types
        (b"acme", snap("other", 9)),  # another tenant's snapshot filed under this key
        (b"\xff\xfe", snap("acme", 9)),  # a key that is not the tenant's name
    ]:
        assert not keep_newest(latest, key, value, 2)
    assert set(latest) == {"acme"} and latest["acme"].epoch == 3
