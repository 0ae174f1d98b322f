from __future__ import annotations

from fleet.records import dlq_record, record_size


def test_a_copy_that_fits_is_whole_with_reason_and_source() -> None:
    value, key, headers = dlq_record(
        b"body",
        b"k",
        [("content-type", b"application/json"), ("x", None), ("fleet-error-code", b"old")],
        "llm.requests",
        1,
        42,
        "invalid_request",
        "why",
        10_000,
    )
    h = dict(headers)
    assert value == b"body" and key == b"k"
    assert h["fleet-error-code"] == b"invalid_request" and h["fleet-source-offset"] == b"42"
    assert h["x"] is None and "fleet-dlq-truncated" not in h
    assert [k for k, _ in headers].count("fleet-error-code") == 1


def test_an_oversized_copy_is_cut_to_fit_and_says_so() -> None:
    body = b"y" * 300_000
    value, key, headers = dlq_record(
        body, b"k" * 5000, [("big", b"h" * 100_000)], "t", 0, 7, "invalid_request", "r" * 5000, 65_536
    )
    h = dict(headers)
    assert record_size(key, value, headers) <= 65_536
    assert body.startswith(value) and len(value) > 60_000
    assert h["fleet-dlq-truncated"] == b"300000" and h["fleet-dlq-headers-dropped"] == b"1"
    assert key is not None and len(key) <= 1024 and len(h["fleet-error-reason"] or b"") <= 1000


def test_a_dlq_copy_never_carries_an_api_key_under_any_spelling() -> None:
    headers = [("content-type", b"application/json"), ("fleet-api-key", b"fk_secret"), ("Fleet-API-Key", b"fk_2")]
    value, _, out = dlq_record(b"{}", b"k", headers, "llm.requests", 0, 7, "unauthenticated", "no", 1 << 20)
    assert value == b"{}" and [k for k, _ in out if "api-key" in k.lower()] == []
    assert ("content-type", b"application/json") in out and not any(b"fk_" in (v or b"") for _, v in out)
