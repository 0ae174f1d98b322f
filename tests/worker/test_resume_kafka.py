"""Issue 13, items 5 and 6, on real processes and a real broker.

Resume: a worker SIGKILLed mid-stream under greedy decoding; the worker that takes its requests over continues
them from their progress records (llm.progress) under the same run id, so the client's text equals a clean
run's and the client sees no `Restart` for them.

Poison across processes: a request whose engine step ends the worker process (the simulated engine's
`os._exit` on a marker: a real process death, nothing raised, nothing flushed) kills each worker that runs it;
the attempts its progress record counts send it to the DLQ as `poison` after `max_attempts`, its batchmates are
answered, and the fleet keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts import Chunk, Done
from contracts.messages import Error, ErrorCode
from contracts.topics import Headers
from fleet.client import FleetClient, Restart
from tests.fixtures_kafka import FleetProcs, started, write_config
from tests.kafka_helpers import RawPeer, first_status, header, resumed_ids, status_pid

pytestmark = pytest.mark.slow

PROMPTS = [f"def func_{i}(x):\n    return x {op} {i}" for i, op in enumerate("+-*/%+-*")]


@pytest.fixture
async def resume_fleet(
    broker: str, tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path
) -> AsyncIterator[FleetProcs]:
    d = tmp_path_factory.mktemp("resume")
    cfg = write_config(
        d / "fleet.toml",
        [{"name": "m", "path": str(tiny_checkpoint), "max_inflight": 24, "max_running": 16}],
        prefix=f"resume{uuid.uuid4().hex[:4]}",
        partitions=4,
    )
    async with started(cfg, broker, d, [("m", "w1"), ("m", "w2")]) as fleet:
        yield fleet


async def test_sigkill_mid_stream_resumes_without_a_restart(resume_fleet: FleetProcs) -> None:
    fleet = resume_fleet
    n, max_tokens = 48, 160
    async with FleetClient(fleet.settings) as c:
        reference = {p: (await c.generate(p, model="m", max_tokens=max_tokens, timeout_s=60)).text for p in PROMPTS}
        texts: dict[str, str] = {}
        restarted: set[str] = set()
        chunks_before_kill: set[str] = set()
        killed = asyncio.Event()
        sem = asyncio.Semaphore(24)

        async def one(k: int) -> None:
            rid = f"res-{k}"
            async with sem:
                async for ev in c.stream(
                    PROMPTS[k % len(PROMPTS)], model="m", max_tokens=max_tokens, timeout_s=120, request_id=rid
                ):
                    if isinstance(ev, Restart):
                        restarted.add(rid)
                    elif isinstance(ev, Chunk) and not killed.is_set():
                        chunks_before_kill.add(rid)
                    elif isinstance(ev, Done):
                        assert rid not in texts, "a request was presented twice"
                        texts[rid] = ev.text

        tasks = [asyncio.create_task(one(k)) for k in range(n)]
        pid = fleet.procs["w1"].pid
        await first_status(fleet.settings, lambda st: status_pid(st) == pid and st.running >= 4, timeout_s=60)
        await asyncio.sleep(0.3)  # well into the streams
        fleet.signal("w1", signal.SIGKILL)
        killed.set()
        fleet.wait("w1")
        await asyncio.wait_for(asyncio.gather(*tasks), 300)

    assert len(texts) == n, "every request completes"
    wrong = [k for k in range(n) if texts[f"res-{k}"] != reference[PROMPTS[k % len(PROMPTS)]]]
    assert not wrong, f"texts differ from a clean run: {wrong}"
    resumed = resumed_ids(fleet.log("w2"))
    interrupted = (resumed | restarted) & chunks_before_kill  # streaming when w1 died, finished elsewhere
    clean = interrupted - restarted
    share = len(clean) / max(1, len(interrupted))
    print(
        f"resume: {n} requests, {len(interrupted)} interrupted mid-stream by SIGKILL, {len(clean)} resumed with no "
        f"Restart seen by the client ({share:.0%}), {len(restarted)} restarted"
    )
    assert len(interrupted) >= 3, "the SIGKILL should have caught streams mid-way"
    assert share >= 0.95


@pytest.fixture
async def exiting_fleet(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FleetProcs]:
    """Two simulated-engine workers of one model on one partition; a step with the marker ends the process."""
    d = tmp_path_factory.mktemp("poison")
    cfg = write_config(
        d / "fleet.toml",
        [
            {
                "name": "sim",
                "path": "none",
                "engine": "simulated",
                "simulated_tokens_per_s": 50.0,
                "max_running": 8,
                "max_inflight": 8,
            }
        ],
        prefix=f"poison{uuid.uuid4().hex[:4]}",
        partitions=1,
        extra='[worker]\nsimulated_exit_marker = "KILLER"\nmax_attempts = 3\nsuspect_alone_after = 2',
    )
    async with started(cfg, broker, d, [("sim", "w1"), ("sim", "w2")]) as fleet:
        yield fleet


def _request(rid: str, reply_to: str, prompt: str, max_tokens: int) -> bytes:
    return json.dumps(
        {"id": rid, "reply_to": reply_to, "prompt": prompt, "model": "sim", "max_tokens": max_tokens}
    ).encode()


async def test_a_request_that_kills_its_workers_becomes_poison_and_the_fleet_keeps_serving(
    exiting_fleet: FleetProcs,
) -> None:
    fleet = exiting_fleet
    topic = fleet.settings.kafka.topics.model("sim")
    reply = f"{fleet.settings.kafka.topic_prefix}.replies.poison"
    tag = uuid.uuid4().hex[:6]
    innocent = {f"ok-{k}-{tag}": f"innocent {k} " for k in range(3)}
    bad = f"bad-{tag}"
    deaths = 0
    async with RawPeer(fleet.settings, reply) as peer:
        for rid, prompt in innocent.items():
            await peer.send(_request(rid, reply, prompt, 60), topic=topic)
        bad_value = _request(bad, reply, "KILLER prompt", 60)
        await peer.send(bad_value, topic=topic)
        deadline = time.monotonic() + 240
        while not any(isinstance(e, Error) and e.id == bad for e in peer.replies):
            assert time.monotonic() < deadline, f"no poison after {deaths} deaths"
            for name in ("w1", "w2"):
                code = fleet.procs[name].poll()
                if code is not None:
                    assert code == 70, f"{name} ended {code}, not by the marker"
                    deaths += 1
                    fleet.start_worker("sim", name)  # as an orchestrator would
            await asyncio.sleep(0.2)
        err = await peer.reply(bad, Error)
        assert err.code is ErrorCode.POISON, err
        dlq = await peer.dlq_record(bad_value)
        assert header(dlq, Headers.ERROR_CODE) == "poison"
        for rid, prompt in innocent.items():
            done = await peer.reply(rid, Done, timeout_s=120)
            assert done.text == "".join(prompt[i % len(prompt)] for i in range(60)), rid
            # the innocent's stream as a client dedups it (by seq) adds up to the final text
            seen = {
                e.seq: e.text for e in peer.replies if isinstance(e, Chunk) and e.id == rid and e.run_id == done.run_id
            }
            assert "".join(seen[s] for s in sorted(seen)) == done.text
        after = f"after-{tag}"
        await peer.send(_request(after, reply, "still serving ", 20), topic=topic)
        assert isinstance(await peer.reply(after, Done, timeout_s=60), Done), "the fleet keeps serving"
    print(f"poison: {deaths} worker deaths before the request was dead-lettered (max_attempts 3)")
    assert deaths == 3


@pytest.fixture
async def revoking_fleet(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FleetProcs]:
    """One simulated worker on two partitions, slow streams and a short revoke grace: a second worker joining
    takes a partition whose requests are mid-stream."""
    d = tmp_path_factory.mktemp("revoke")
    cfg = write_config(
        d / "fleet.toml",
        [{"name": "sim", "path": "none", "engine": "simulated", "simulated_tokens_per_s": 25.0, "max_inflight": 16}],
        prefix=f"revoke{uuid.uuid4().hex[:4]}",
        partitions=2,
        extra="[worker]\nrevoke_grace_s = 0.3",
    )
    async with started(cfg, broker, d, [("sim", "w1")]) as fleet:
        yield fleet


async def test_a_partition_lost_mid_stream_is_resumed_by_its_new_owner(revoking_fleet: FleetProcs) -> None:
    fleet = revoking_fleet
    n, max_tokens = 12, 150  # 6 s a stream: the rebalance lands mid-stream
    prompts = {f"rv-{k}-{uuid.uuid4().hex[:4]}": f"stream {k} goes on " for k in range(n)}
    async with FleetClient(fleet.settings) as c:
        restarted: set[str] = set()
        texts: dict[str, str] = {}

        async def one(rid: str, prompt: str) -> None:
            async for ev in c.stream(prompt, model="sim", max_tokens=max_tokens, timeout_s=120, request_id=rid):
                if isinstance(ev, Restart):
                    restarted.add(rid)
                elif isinstance(ev, Done):
                    texts[rid] = ev.text

        tasks = [asyncio.create_task(one(rid, p)) for rid, p in prompts.items()]
        pid = fleet.procs["w1"].pid
        await first_status(fleet.settings, lambda st: status_pid(st) == pid and st.running >= n, timeout_s=30)
        fleet.start_worker("sim", "w2")  # the group rebalances: w1 lets one partition go mid-stream
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    assert texts == {rid: "".join(p[i % len(p)] for i in range(max_tokens)) for rid, p in prompts.items()}
    resumed = resumed_ids(fleet.log("w2"))
    print(f"revoke: {len(resumed)} of {n} streams resumed by the new owner, {len(restarted)} restarted")
    assert resumed, "the new owner should have taken streams over mid-way"
    assert not restarted
    taken = [json.loads(line) for line in fleet.log("w2").splitlines() if '"worker.resuming"' in line]
    assert taken and all(rec["deaths"] == 0 for rec in taken), "let go alive: not charged an attempt"
