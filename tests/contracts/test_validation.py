from __future__ import annotations

import pytest

from contracts import ChatMessage, ErrorCode, InvalidRequest, Limits, Request, validate_request
from contracts.validation import effective_deadline_ms

LIMITS = Limits(max_tokens_ceiling=512, max_prompt_chars=100)


def base(**kw: object) -> Request:
    fields: dict[str, object] = {"id": "r1", "reply_to": "replies", "prompt": "hello"}
    fields.update(kw)
    return Request(**fields)  # type: ignore[arg-type]


def test_valid_request_passes() -> None:
    validate_request(base(), LIMITS)
    validate_request(base(prompt=None, messages=[ChatMessage("user", "x")]), LIMITS)


@pytest.mark.parametrize(
    ("kw", "code", "needle"),
    [
        ({"id": ""}, ErrorCode.INVALID_REQUEST, "id"),
        ({"id": "x" * 201}, ErrorCode.INVALID_REQUEST, "200"),
        ({"reply_to": ""}, ErrorCode.INVALID_REQUEST, "reply_to"),
        ({"reply_to": "bad topic!"}, ErrorCode.INVALID_REQUEST, "reply_to"),
        ({"prompt": None}, ErrorCode.INVALID_REQUEST, "exactly one"),
        ({"messages": [ChatMessage("user", "x")]}, ErrorCode.INVALID_REQUEST, "exactly one"),
        ({"prompt": None, "messages": []}, ErrorCode.INVALID_REQUEST, "empty"),
        ({"prompt": None, "messages": [ChatMessage("wizard", "x")]}, ErrorCode.INVALID_REQUEST, "role"),
        ({"max_tokens": 0}, ErrorCode.INVALID_REQUEST, "max_tokens"),
        ({"max_tokens": -5}, ErrorCode.INVALID_REQUEST, "max_tokens"),
        ({"max_tokens": 513}, ErrorCode.INVALID_REQUEST, "ceiling"),
        ({"temperature": -0.1}, ErrorCode.INVALID_REQUEST, "temperature"),
        ({"temperature": float("nan")}, ErrorCode.INVALID_REQUEST, "temperature"),
        ({"top_p": 0.0}, ErrorCode.INVALID_REQUEST, "top_p"),
        ({"top_p": 1.5}, ErrorCode.INVALID_REQUEST, "top_p"),
        ({"prompt": "x" * 101}, ErrorCode.PROMPT_TOO_LONG, "101"),
        ({"stop": [""]}, ErrorCode.INVALID_REQUEST, "stop"),
        ({"timeout_ms": 0}, ErrorCode.INVALID_REQUEST, "timeout_ms"),
        ({"seed": -1}, ErrorCode.INVALID_REQUEST, "seed"),
    ],
)
def test_invalid_requests_say_why(kw: dict[str, object], code: ErrorCode, needle: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        validate_request(base(**kw), LIMITS)
    assert e.value.code is code
    assert needle in e.value.message


def test_effective_deadline_takes_the_earlier() -> None:
    assert effective_deadline_ms(base(), 1000) is None
    assert effective_deadline_ms(base(timeout_ms=500), 1000) == 1500
    assert effective_deadline_ms(base(timeout_ms=500, deadline_ms=1200), 1000) == 1200


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"temperature": 1e-30}, "temperature"),
        ({"temperature": 0.009}, "temperature"),
        ({"timeout_ms": 2**64 - 1}, "timeout_ms"),
        ({"timeout_ms": 900_001}, "timeout_ms"),
        ({"deadline_ms": 2**63}, "deadline_ms"),
        ({"tenant": "t" * 129}, "tenant"),
        ({"model": "m" * 101}, "model"),
        ({"metadata": {"x": b"bytes"}}, "bytes"),
        ({"metadata": {"x": {1: 2}}}, "key"),
        ({"metadata": {"x": [float("inf")]}}, "non-finite"),
        ({"metadata": {"x": 2**70}}, "64-bit"),
    ],
)
def test_fields_that_cannot_be_forwarded_are_refused_before_re_encoding(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        validate_request(base(**kw), Limits())
    assert e.value.code is ErrorCode.INVALID_REQUEST and needle in e.value.message


def test_greedy_and_sane_temperatures_pass() -> None:
    for t in (0.0, 0.01, 1.0, 2.0):
        validate_request(base(temperature=t), Limits())


def test_total_size_is_checked_on_the_bytes() -> None:
    from contracts.validation import check_size

    check_size(b"x" * 100, Limits(max_request_bytes=100))
    with pytest.raises(InvalidRequest):
        check_size(b"x" * 101, Limits(max_request_bytes=100))


def test_routed_deadline_is_capped_and_on_the_receivers_clock() -> None:
    from contracts.validation import routed_deadline_ms

    now = 1_000_000
    assert routed_deadline_ms(base(), now, now, 5_000) == now + 5_000  # none given: the cap
    assert routed_deadline_ms(base(timeout_ms=1_000), now + 3_600_000, now, 5_000) == now + 1_000  # clock ahead
    assert routed_deadline_ms(base(deadline_ms=now + 3_600_000), now, now, 5_000) == now + 5_000
    assert routed_deadline_ms(base(timeout_ms=1_000), now - 400, now, 5_000) == now + 600  # time queued counts
