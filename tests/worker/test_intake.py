"""Intake's reading of the router's intake-time header: whatever bytes it holds, a time or the fallback."""

from __future__ import annotations

import pytest

from worker.intake import _header_ms


@pytest.mark.parametrize("raw", [None, b"", b"abc", b"9" * 400, b"-5", b"\xff\x00", b"1" * 21])
def test_an_unreadable_intake_header_falls_back_to_the_record_time(raw: bytes | None) -> None:
    assert _header_ms(raw, 1234) == 1234


def test_a_plausible_intake_header_is_used() -> None:
    assert _header_ms(b"1764460000000", 1234) == 1764460000000


def test_the_routers_name_headers_are_read_safely_whatever_arrives() -> None:
    """`fleet-tier` and `fleet-requested-model` go into `done` as text: missing, null, empty, huge, binary or
    repeated headers never raise and never put more than a name's worth of text there."""
    from worker.intake import header_text

    name = "fleet-requested-model"
    assert header_text(None, name) is None
    assert header_text([], name) is None
    assert header_text([(name, None)], name) is None
    assert header_text([(name, b"")], name) is None
    assert header_text([(name, b"x" * 10_000)], name) is None  # no name is that long: not cut into another
    assert header_text([(name, b"\xff\xfe")], name) is None
    assert header_text([(name, "é".encode() * 50)], name) == "é" * 50  # 100 bytes: still a name
    assert header_text([("other", b"a"), (name, b"large"), (name, b"small")], name) == "large"  # the first
