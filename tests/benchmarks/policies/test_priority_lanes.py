"""Priority lanes on real processes (router, simulated-engine worker: timed token emission, no model), small:
with a batch backlog that could fill the worker, interactive requests are all served while the backlog is
still being worked through, and the backlog progresses meanwhile (spare capacity is used, not wasted).
benchmarks/policies/priority_lanes.py measures the TTFT figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.policies.priority_lanes import phase

pytestmark = pytest.mark.slow


async def test_interactive_requests_pass_a_batch_backlog_that_still_progresses(broker: str, tmp_path: Path) -> None:
    p = await phase(broker, tmp_path, "lanes", interactive=12, rate=4.0, backlog=120, backlog_priority="batch")
    assert len(p.ttft_ms) == p.interactive  # every interactive request answered
    # the backlog (120 x 32 tokens at 50 tokens/s on 4 batch slots: about 19 s) progressed meanwhile, and the
    # interactive requests did not wait for it: most of it was still pending when the last one was answered
    # (behind a FIFO queue they would have come after all of it)
    assert 0 < p.batch_served_during < p.batch_sent // 2, p
