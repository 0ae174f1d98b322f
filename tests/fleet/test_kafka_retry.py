from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaConnectionError, KafkaTimeoutError

from fleet.kafka import COMMIT_FATAL, is_retriable, with_retry


async def test_commit_failures_after_a_rebalance_are_not_retried() -> None:
    calls = 0

    async def commit() -> None:
        nonlocal calls
        calls += 1
        raise CommitFailedError("rebalanced")

    with pytest.raises(CommitFailedError):
        await with_retry("commit", commit, fatal=COMMIT_FATAL)
    assert calls == 1
    assert IllegalStateError in COMMIT_FATAL


async def test_a_retry_loop_stops_when_the_service_stops() -> None:
    stop = asyncio.Event()

    async def down() -> None:
        raise KafkaConnectionError("away")

    asyncio.get_running_loop().call_later(0.3, stop.set)
    t0 = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        await with_retry("x", down, stop=stop, max_backoff_s=30)
    assert time.monotonic() - t0 < 2


def test_full_buffers_and_lost_connections_are_retriable() -> None:
    assert is_retriable(KafkaTimeoutError()) and is_retriable(KafkaConnectionError())
    assert not is_retriable(CommitFailedError()) and not is_retriable(TypeError())
