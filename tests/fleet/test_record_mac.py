"""fleet/record_mac.py: a record's MAC is its own (pure)."""

from __future__ import annotations

import pytest

from fleet.record_mac import MAC_HEADER, Kind, RecordMac, record_mac

pytestmark = pytest.mark.unit

SECRET = "0123456789abcdef0123456789abcdef"


def test_a_signed_record_verifies_and_nothing_else_does() -> None:
    mac = RecordMac(SECRET)
    h = [mac.header(Kind.USAGE, b"req-1", b'{"cost": 0.5}')]
    assert mac.verify(Kind.USAGE, b"req-1", b'{"cost": 0.5}', h)
    assert not mac.verify(Kind.USAGE, b"req-1", b'{"cost": 0.0}', h)  # another value
    assert not mac.verify(Kind.USAGE, b"req-2", b'{"cost": 0.5}', h)  # another key
    assert not mac.verify(Kind.PROGRESS, b"req-1", b'{"cost": 0.5}', h)  # another kind
    assert not RecordMac("x" * 32).verify(Kind.USAGE, b"req-1", b'{"cost": 0.5}', h)  # another secret
    assert not mac.verify(Kind.USAGE, b"req-1", b'{"cost": 0.5}', [])
    assert not mac.verify(Kind.USAGE, b"req-1", b'{"cost": 0.5}', [*h, *h])  # two copies: which one?
    assert not mac.verify(Kind.USAGE, b"req-1", b'{"cost": 0.5}', [(MAC_HEADER, None)])
    assert not mac.verify(Kind.USAGE, b"req-1", b'{"cost": 0.5}', [(MAC_HEADER, b"\xff" * 64)])


def test_none_and_empty_sign_differently_and_parts_cannot_shift() -> None:
    mac = RecordMac(SECRET)
    assert mac.sign(Kind.PROGRESS, b"k", None) != mac.sign(Kind.PROGRESS, b"k", b"")  # a tombstone is not empty
    assert mac.sign(Kind.REQUEST, b"ab", b"c") != mac.sign(Kind.REQUEST, b"a", b"bc")


def test_a_short_secret_is_refused_and_none_means_unsigned() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        RecordMac("short")
    assert record_mac(None) is None and record_mac("") is None
