"""The worker over Kafka on real tiny checkpoints: bitsandbytes 8-bit and 4-bit end to end, and
backpressure (pause/resume) with a tiny capacity under a burst."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from contracts import Codec
from fleet.client import FleetClient
from fleet.kafka import make_consumer
from tests.fixtures_kafka import FleetProcs, started, write_config
from tests.kafka_helpers import first_status


@pytest.fixture(scope="module")
async def quant_fleet(
    broker: str, tmp_path_factory: pytest.TempPathFactory, tiny_pair: object
) -> AsyncIterator[FleetProcs]:
    d = tmp_path_factory.mktemp("quant")
    target, draft = str(tiny_pair.target), str(tiny_pair.draft)  # type: ignore[attr-defined]
    cfg = write_config(
        d / "fleet.toml",
        [
            {"name": "q8", "path": target, "quantization": "int8"},
            # a 4-bit draft too: bitsandbytes' CPU 4-bit kernels need in_features >= their blocksize (64), so
            # the 32-wide tiny draft cannot be 4-bit here; the 64-wide target drafts for itself instead
            {"name": "q4", "path": target, "quantization": "nf4", "draft_path": target, "draft_quantization": "nf4"},
            # these two step in the worker's thread: the engine-process path is covered by q8 and q4, and two
            # fewer processes importing torch take about 15 s off this fixture on two cores
            {"name": "q4d", "path": target, "quantization": "nf4-double", "engine_process": False},
            {"name": "tight", "path": draft, "max_inflight": 4, "max_running": 2, "engine_process": False},
        ],
        prefix="quant",
    )
    workers = [(m, f"worker-{m}") for m in ("q8", "q4", "q4d", "tight")]
    async with started(cfg, broker, d, workers) as fleet:
        yield fleet


@pytest.mark.parametrize("model", ["q8", "q4", "q4d"])
async def test_quantized_models_generate_over_kafka(quant_fleet: FleetProcs, model: str) -> None:
    async with FleetClient(quant_fleet.settings) as c:
        r = await c.generate("def add(a, b):", model=model, max_tokens=12, timeout_s=120)
        chat = await c.generate(messages=[{"role": "user", "content": "hi"}], model=model, max_tokens=6, timeout_s=120)
    assert r.model == model and 1 <= r.usage.completion_tokens <= 12
    assert chat.usage.prompt_tokens > 0
    log = quant_fleet.log(f"worker-{model}")
    assert '"quantization": "' + {"q8": "int8", "q4": "nf4", "q4d": "nf4-double"}[model] in log


async def test_quantized_weights_are_smaller(quant_fleet: FleetProcs) -> None:
    """The status topic reports each worker's weight bytes: 4-bit < 8-bit (tiny models keep fp32 embeddings)."""
    codec = Codec()
    c = make_consumer(
        quant_fleet.settings, quant_fleet.settings.kafka.topics.status, group_id=None, auto_offset_reset="earliest"
    )
    await c.start()
    sizes: dict[str, int] = {}
    try:
        while len(sizes) < 3:
            for records in (await c.getmany(timeout_ms=500)).values():
                for r in records:
                    st = codec.decode_status(r.value)
                    if st.model in ("q8", "q4d", "tight"):
                        sizes[st.model] = st.weights_bytes
                        assert st.kv_budget_bytes > 0
    finally:
        await c.stop()
    assert 0 < sizes["q4d"] < sizes["q8"]


async def test_speculation_acceptance_per_request_and_in_aggregate(quant_fleet: FleetProcs) -> None:
    """q4 drafts with its own weights: greedy drafts match the target, so most are accepted. The rate
    is in the request's `done` timings and, summed over the worker's life, on the status topic."""
    async with FleetClient(quant_fleet.settings) as c:
        r = await c.generate("def add(a, b):", model="q4", max_tokens=16, timeout_s=120)
    t = r.timings
    assert t.spec_draft_tokens > 0 and 0 <= t.spec_accepted_tokens <= t.spec_draft_tokens
    assert t.spec_acceptance == pytest.approx(t.spec_accepted_tokens / t.spec_draft_tokens, abs=1e-4)
    assert t.spec_acceptance > 0.5
    latest = await first_status(
        quant_fleet.settings,
        lambda st: st.model == "q4" and st.spec_draft_tokens >= t.spec_draft_tokens,
        from_start=True,
    )
    assert latest.spec_acceptance == pytest.approx(latest.spec_accepted_tokens / latest.spec_draft_tokens, abs=1e-4)
    assert latest.spec_accepted_tokens >= t.spec_accepted_tokens


async def test_backpressure_bounds_uncommitted_and_everything_completes(quant_fleet: FleetProcs) -> None:
    codec = Codec()
    status = make_consumer(quant_fleet.settings, quant_fleet.settings.kafka.topics.status, group_id=None)
    await status.start()
    seen_paused = False
    max_uncommitted = 0

    async def watch() -> None:
        nonlocal seen_paused, max_uncommitted
        while True:
            for records in (await status.getmany(timeout_ms=100)).values():
                for r in records:
                    st = codec.decode_status(r.value)
                    if st.model == "tight":
                        seen_paused |= st.state == "paused"
                        max_uncommitted = max(max_uncommitted, st.max_uncommitted, st.uncommitted)

    watcher = asyncio.create_task(watch())
    try:
        async with FleetClient(quant_fleet.settings) as c:
            results = await asyncio.gather(
                *[c.generate(f"burst {k}:", model="tight", max_tokens=24, timeout_s=180) for k in range(40)]
            )
        await asyncio.sleep(1.0)  # one more status report after the burst
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await status.stop()
    assert len(results) == 40 and all(r.usage.completion_tokens >= 1 for r in results)
    assert 0 < max_uncommitted <= 4, max_uncommitted
    assert seen_paused or '"worker.paused"' in quant_fleet.log("worker-tight")
