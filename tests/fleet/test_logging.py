from __future__ import annotations

import logging

from fleet.logging import RepeatFilter


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, None, None)


def test_repeat_filter_passes_once_per_interval_and_counts() -> None:
    f = RepeatFilter(interval_s=60)
    assert f.filter(record("Unable connect to node %s"))
    assert not any(f.filter(record("Unable connect to node %s")) for _ in range(50))
    assert f.filter(record("another message"))
    f.interval_s = 0
    r = record("Unable connect to node %s")
    assert f.filter(r) and "50 similar messages suppressed" in str(r.msg)
