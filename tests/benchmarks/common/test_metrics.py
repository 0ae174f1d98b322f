"""Metric computation against hand-made timestamp traces (vLLM `bench serve` definitions)."""

from __future__ import annotations

import pytest

from benchmarks.common.metrics import (
    RequestTrace,
    distribution,
    parse_slos,
    request_metrics,
    summarize,
)


def _trace(send: float, events: list[float], done: float | None, out: int, prompt: int = 10) -> RequestTrace:
    return RequestTrace(send_s=send, token_event_s=events, done_s=done, prompt_tokens=prompt, output_tokens=out)


def test_one_request_by_hand() -> None:
    # sent at 1.0; chunks at 1.1 (first token), 1.15, 1.3; done at 1.3 with 5 tokens
    m = request_metrics(_trace(1.0, [1.1, 1.15, 1.3], 1.3, out=5))
    assert m is not None
    assert m.ttft == pytest.approx(0.1)
    assert m.itl == pytest.approx([0.05, 0.15])
    assert m.e2el == pytest.approx(0.3)
    assert m.tpot == pytest.approx((0.3 - 0.1) / 4)


def test_single_token_output_has_no_tpot_and_no_itl() -> None:
    m = request_metrics(_trace(0.0, [0.02], 0.021, out=1))
    assert m is not None
    assert m.tpot is None and m.itl == []
    assert m.ttft == pytest.approx(0.02) and m.e2el == pytest.approx(0.021)


def test_done_without_chunks_times_first_token_at_done() -> None:
    m = request_metrics(_trace(0.0, [], 0.05, out=0))
    assert m is not None and m.ttft == pytest.approx(0.05) and m.tpot is None


def test_errored_request_has_no_metrics() -> None:
    t = RequestTrace(send_s=0.0, token_event_s=[0.1], done_s=None, error="overloaded")
    assert not t.success and request_metrics(t) is None


def test_summary_excludes_errors_and_single_token_tpot() -> None:
    traces = [
        _trace(0.0, [0.1, 0.2, 0.3], 0.3, out=3, prompt=7),  # ttft 100, tpot 100, e2el 300
        _trace(0.5, [0.55], 0.55, out=1, prompt=5),  # single token: ttft 50, e2el 50, no tpot
        RequestTrace(send_s=1.0, token_event_s=[1.2], error="internal"),
        RequestTrace(send_s=1.0, error="expired"),
        RequestTrace(send_s=1.0, error="expired"),
    ]
    s = summarize(traces, duration_s=2.0, slos_ms={"ttft": 60.0})
    assert (s.completed, s.failed) == (2, 3)
    assert s.errors == {"expired": 2, "internal": 1}
    assert s.total_input_tokens == 12 and s.total_output_tokens == 4
    assert s.request_throughput == pytest.approx(1.0)
    assert s.output_throughput == pytest.approx(2.0)
    assert s.total_token_throughput == pytest.approx(8.0)
    assert s.ttft.n == 2 and s.ttft.mean == pytest.approx(75.0) and s.ttft.median == pytest.approx(75.0)
    assert s.tpot.n == 1 and s.tpot.mean == pytest.approx(100.0)
    assert s.itl.n == 2 and s.itl.mean == pytest.approx(100.0)
    assert s.e2el.max == pytest.approx(300.0)
    # only the single-token request meets ttft <= 60 ms; its TPOT counts as 0 for goodput
    assert s.request_goodput == pytest.approx(0.5)
    assert s.goodput_fraction == pytest.approx(1 / 5)


def test_goodput_counts_single_token_tpot_as_zero() -> None:
    traces = [_trace(0.0, [0.01], 0.01, out=1), _trace(0.0, [0.01, 0.5], 0.5, out=2)]
    s = summarize(traces, 1.0, {"tpot": 10.0, "e2el": 1000.0})
    assert s.request_goodput == pytest.approx(1.0)  # the second has tpot 490 ms


def test_slo_is_inclusive() -> None:
    s = summarize([_trace(0.0, [0.25], 0.5, out=1)], 1.0, {"ttft": 250.0, "e2el": 500.0})
    assert s.request_goodput == pytest.approx(1.0)


def test_no_slos_means_no_goodput() -> None:
    s = summarize([_trace(0.0, [0.1], 0.1, out=1)], 1.0)
    assert s.request_goodput is None and s.goodput_fraction is None


def test_percentiles_are_numpy_linear() -> None:
    d = distribution([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert d.median == pytest.approx(50.5)
    assert d.p90 == pytest.approx(90.1)
    assert d.p99 == pytest.approx(99.01)
    assert d.min == pytest.approx(1.0) and d.max == pytest.approx(100.0)


def test_all_failed_reports_zeros() -> None:
    s = summarize([RequestTrace(send_s=0.0, error="internal")], 1.0)
    assert s.completed == 0 and s.ttft.mean == 0.0 and s.tpot.p99 == 0.0


def test_parse_slos() -> None:
    assert parse_slos(["ttft:500 tpot:50", "e2el:2000"]) == {"ttft": 500.0, "tpot": 50.0, "e2el": 2000.0}
    for bad in ("ttft", "itl:5", "ttft:-1", "ttft:abc"):
        with pytest.raises(ValueError):
            parse_slos([bad])


def test_duration_must_be_positive() -> None:
    with pytest.raises(ValueError):
        summarize([], 0.0)
