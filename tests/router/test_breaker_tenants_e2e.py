"""Issue 23, item 1, on real processes (a router and a simulated-engine worker: timed token emission, no model):
one tenant's requests that fail by its own choice (a prompt over the model's context, a deadline too short for
the tokens it asks for) never open the model's breaker, so another tenant's requests are all served. On the
code before, about 3 such requests a second got most of the other tenant's requests refused `overloaded`."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest

from contracts import Done, Error, ErrorCode
from fleet.tenants import mint_key
from tests.fixtures_kafka import FleetProcs, started, write_config
from tests.kafka_helpers import RawPeer

pytestmark = pytest.mark.system

BAIT_KEY, BAIT_HASH = mint_key()
VICTIM_KEY, VICTIM_HASH = mint_key()


@pytest.fixture(scope="module")
async def two_tenants(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FleetProcs]:
    d = tmp_path_factory.mktemp("breakertenants")
    tenants = (
        f'[[tenants]]\nname = "bait"\napi_key_hashes = ["{BAIT_HASH}"]\n'
        f'[[tenants]]\nname = "victim"\napi_key_hashes = ["{VICTIM_HASH}"]\n'
        # a short window, so that the bait's outcomes are most of what the breaker sees
        "[router]\nbreaker_window_s = 10.0\nbreaker_min_requests = 10\n"
    )
    cfg = write_config(
        d / "fleet.toml",
        # one token per byte (the simulated tokenizer): a 3,000-character prompt is over the 2,048-token context
        [{"name": "sim", "path": "none", "engine": "simulated", "simulated_tokens_per_s": 300.0, "max_inflight": 64}],
        prefix=f"brk{uuid.uuid4().hex[:4]}",
        extra=tenants + "[limits]\nmax_tokens_ceiling = 4000\n",
    )
    async with started(cfg, broker, d, [("sim", "worker-sim")]) as fleet:
        yield fleet


def request(rid: str, reply_to: str, **kw: object) -> bytes:
    return json.dumps({"id": rid, "reply_to": reply_to, "prompt": "hi", "model": "sim", **kw}).encode()


async def test_one_tenants_self_inflicted_failures_never_refuse_another_tenants_requests(
    two_tenants: FleetProcs,
) -> None:
    prefix = two_tenants.settings.kafka.topic_prefix
    bait_reply, victim_reply = f"{prefix}.replies.bait.x", f"{prefix}.replies.victim.x"
    ct = ("content-type", b"application/json")
    async with RawPeer(two_tenants.settings, bait_reply) as bait, RawPeer(two_tenants.settings, victim_reply) as victim:
        bait_ids, victim_ids = [], []
        for i in range(48):  # about 4 baits a second for 12 s, a victim request beside each
            rid = f"bait-{i}-{uuid.uuid4().hex[:4]}"
            if i % 2:  # over the model's context: refused prompt_too_long by the worker, with a DLQ copy
                value = request(rid, bait_reply, prompt="x" * 3000, max_tokens=4)
            else:  # 2,000 tokens in 100 ms at 300 tokens/s: expired during generation
                value = request(rid, bait_reply, max_tokens=2000, timeout_ms=100)
            await bait.send(value, headers=[ct, ("fleet-api-key", BAIT_KEY.encode())])
            bait_ids.append(rid)
            vid = f"victim-{i}-{uuid.uuid4().hex[:4]}"
            await victim.send(
                request(vid, victim_reply, max_tokens=4), headers=[ct, ("fleet-api-key", VICTIM_KEY.encode())]
            )
            victim_ids.append(vid)
            await asyncio.sleep(0.25)
        bait_codes = {(await bait.reply(rid, Error, timeout_s=60)).code for rid in bait_ids}
        assert bait_codes == {ErrorCode.PROMPT_TOO_LONG, ErrorCode.EXPIRED}, bait_codes  # the bait did fail
        for vid in victim_ids:
            ev = await victim.wait_for(
                lambda e, vid=vid: isinstance(e, Done | Error) and e.id == vid, f"the outcome of {vid}", timeout_s=60
            )
            assert isinstance(ev, Done), ev  # never `overloaded`: the breaker stayed closed for the victim
    log = two_tenants.log("router")
    assert "router.breaker" not in log, [ln for ln in log.splitlines() if "router.breaker" in ln][:5]
