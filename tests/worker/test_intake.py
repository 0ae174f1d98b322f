"""Intake's reading of the router's intake-time header: whatever bytes it holds, a time or the fallback."""

from __future__ import annotations

import pytest

from worker.intake import _header_ms


@pytest.mark.parametrize("raw", [None, b"", b"abc", b"9" * 400, b"-5", b"\xff\x00", b"1" * 21])
def test_an_unreadable_intake_header_falls_back_to_the_record_time(raw: bytes | None) -> None:
    assert _header_ms(raw, 1234) == 1234


def test_a_plausible_intake_header_is_used() -> None:
    assert _header_ms(b"1764460000000", 1234) == 1764460000000
