"""The whole path on real processes: raw Kafka producer or client library -> router -> worker on
real tiny checkpoints -> reply topic."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from contracts import Chunk, Codec, ContentType, Done, Error, ErrorCode, Request
from fleet.client import FleetClient, FleetTimeout, RequestCancelled, RequestFailed
from tests.fixtures_kafka import FleetProcs
from tests.kafka_helpers import RawPeer, header


def rid() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def collect(c: FleetClient, **kw: object) -> tuple[list[Chunk], Done]:
    chunks: list[Chunk] = []
    async for ev in c.stream(**kw):  # type: ignore[arg-type]
        if isinstance(ev, Chunk):
            chunks.append(ev)
        elif isinstance(ev, Done):
            return chunks, ev
    raise AssertionError("no done")


@pytest.mark.parametrize("kind", ["prompt", "messages"])
async def test_stream_prompt_and_messages(model_fleet: FleetProcs, kind: str) -> None:
    kw: dict[str, object] = (
        {"prompt": "def add(a, b):"}
        if kind == "prompt"
        else {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Write a loop."}]}
    )
    async with FleetClient(model_fleet.settings) as c:
        chunks, done = await collect(c, model="large", max_tokens=24, timeout_s=60, **kw)
    assert chunks, "at least the first token streams as its own chunk"
    assert [ch.seq for ch in chunks] == list(range(len(chunks)))
    assert done.seq == len(chunks)
    assert "".join(ch.text for ch in chunks) == done.text
    assert {ch.run_id for ch in chunks} == {done.run_id} and done.run_id
    assert done.usage.prompt_tokens > 0 and 0 < done.usage.completion_tokens <= 24
    t = done.timings
    assert 0 < t.ttft_ms <= t.total_ms and t.queue_ms >= 0 and t.tpot_ms >= 0
    assert done.model == "large"


async def test_raw_json_producer_and_msgpack(model_fleet: FleetProcs) -> None:
    """A non-Python service: plain JSON bytes on llm.requests, JSON events back; msgpack answered in msgpack."""
    reply = f"e2e.replies.raw-{uuid.uuid4().hex[:6]}"
    async with RawPeer(model_fleet.settings, reply) as peer:
        a = rid()
        await peer.send(
            json.dumps({"id": a, "reply_to": reply, "prompt": "import", "model": "small", "max_tokens": 5}).encode(),
            key=a.encode(),
        )
        done = await peer.reply(a, Done)
        assert done.usage.completion_tokens <= 5
        b = rid()
        body = Codec().encode(
            Request(id=b, reply_to=reply, prompt="class", model="small", max_tokens=3), ContentType.MSGPACK
        )
        await peer.send(body, content_type=b"application/msgpack")
        assert (await peer.reply(b, Done)).model == "small"


async def test_auto_routes_simple_and_complex_to_different_tiers(model_fleet: FleetProcs) -> None:
    async with FleetClient(model_fleet.settings) as c:
        simple = await c.generate("Say hi.", max_tokens=4, timeout_s=60)
        complex_ = await c.generate(
            "Explain step by step why this sort is O(n log n), prove it, and compare the trade-offs:\n"
            "```python\ndef sort(xs):\n    return sorted(xs)\n```",
            max_tokens=4,
            timeout_s=60,
        )
    assert simple.model == "small"
    assert complex_.model == "large"


BAD_INPUTS = [
    # (name, body builder, content-type, expected code, answered on reply_to?)
    (
        "not-json",
        lambda i, r: b"\x00\x01 this is not json " + i.encode(),
        b"application/json",
        ErrorCode.INVALID_ENCODING,
        False,
    ),
    (
        "missing-id",
        lambda i, r: json.dumps({"reply_to": r, "prompt": "x", "nonce": i}).encode(),
        b"application/json",
        ErrorCode.INVALID_REQUEST,
        False,
    ),
    (
        "missing-reply-to",
        lambda i, r: json.dumps({"id": i, "prompt": "x"}).encode(),
        b"application/json",
        ErrorCode.INVALID_REQUEST,
        False,
    ),
    (
        "unknown-model",
        lambda i, r: json.dumps({"id": i, "reply_to": r, "prompt": "x", "model": "nope"}).encode(),
        b"application/json",
        ErrorCode.UNKNOWN_MODEL,
        True,
    ),
    (
        "max-tokens-0",
        lambda i, r: json.dumps({"id": i, "reply_to": r, "prompt": "x", "max_tokens": 0}).encode(),
        b"application/json",
        ErrorCode.INVALID_REQUEST,
        True,
    ),
    (
        "max-tokens-neg",
        lambda i, r: json.dumps({"id": i, "reply_to": r, "prompt": "x", "max_tokens": -5}).encode(),
        b"application/json",
        ErrorCode.INVALID_REQUEST,
        True,
    ),
    (
        "prompt-too-long",
        lambda i, r: json.dumps({"id": i, "reply_to": r, "prompt": "x" * 2001}).encode(),
        b"application/json",
        ErrorCode.PROMPT_TOO_LONG,
        True,
    ),
    (
        "prompt-and-messages",
        lambda i, r: json.dumps(
            {"id": i, "reply_to": r, "prompt": "x", "messages": [{"role": "user", "content": "y"}]}
        ).encode(),
        b"application/json",
        ErrorCode.INVALID_REQUEST,
        True,
    ),
    (
        "msgpack-labelled-json",
        lambda i, r: Codec().encode(Request(id=i, reply_to=r, prompt="x"), ContentType.MSGPACK),
        b"application/json",
        ErrorCode.INVALID_ENCODING,
        True,
    ),
]


async def test_bad_input_gets_typed_errors_and_dlq_then_fleet_serves(model_fleet: FleetProcs) -> None:
    reply = f"e2e.replies.bad-{uuid.uuid4().hex[:6]}"
    async with RawPeer(model_fleet.settings, reply) as peer:
        cases = []
        for name, build, ct, code, answered in BAD_INPUTS:
            i = rid()
            body = build(i, reply)
            await peer.send(body, content_type=ct)
            cases.append((name, i, body, code, answered))
        # an already-expired deadline: refused with `expired`, not a DLQ matter
        exp = rid()
        await peer.send(
            json.dumps(
                {"id": exp, "reply_to": reply, "prompt": "x", "deadline_ms": int(time.time() * 1000) - 1000}
            ).encode()
        )
        for name, i, body, code, answered in cases:
            rec = await peer.dlq_record(body)
            assert header(rec, "fleet-error-code") == code.value, name
            assert header(rec, "fleet-error-reason"), name
            assert header(rec, "fleet-source-topic") == model_fleet.settings.kafka.topics.requests
            if answered:
                err = await peer.reply(i, Error)
                assert err.code is code and err.message and not err.retriable, name
        err = await peer.reply(exp, Error)
        assert err.code is ErrorCode.EXPIRED
        assert not any(r.value and exp.encode() in r.value for r in peer.dlq)
    async with FleetClient(model_fleet.settings) as c:  # router and worker go on serving
        r = await c.generate("def f():", model="large", max_tokens=3, timeout_s=60)
        assert r.usage.completion_tokens >= 1


async def test_fifty_concurrent_generates_share_one_reply_topic(model_fleet: FleetProcs) -> None:
    prompts = ["def add(a, b):", "import os\n", "class Foo:", "for i in range(", "# comment\n"]
    async with FleetClient(model_fleet.settings) as c:
        reference = {p: (await c.generate(p, model="small", max_tokens=12, timeout_s=60)).text for p in prompts}
        ids = [rid() for _ in range(50)]
        results = await asyncio.gather(
            *[
                c.generate(prompts[k % 5], model="small", max_tokens=12, timeout_s=120, request_id=ids[k])
                for k in range(50)
            ]
        )
    assert [r.id for r in results] == ids
    for k, r in enumerate(results):
        assert r.text == reference[prompts[k % 5]], f"request {k} got another request's or a different answer"


async def test_client_timeout_raises_and_a_model_with_no_worker_is_refused_once_its_breaker_opens(
    model_fleet: FleetProcs,
) -> None:
    """No worker serves `ghost`: until its breaker opens (router.breaker_start_grace_ms after the router's start)
    the request waits in its topic and the client times out; then the router refuses it at once, `overloaded`
    (retriable), naming the reason: never silence."""
    async with FleetClient(model_fleet.settings) as c:
        t_end = time.monotonic() + 30
        while True:
            t0 = time.monotonic()
            try:
                await c.generate("x", model="ghost", max_tokens=4, timeout_s=1.5)
            except FleetTimeout:
                assert time.monotonic() - t0 < 10
                assert time.monotonic() < t_end, "ghost's breaker never opened"
                continue
            except RequestFailed as exc:
                assert exc.code is ErrorCode.OVERLOADED and exc.retriable and "no live worker" in str(exc)
                assert time.monotonic() - t0 < 1.5
                break
            raise AssertionError("ghost has no worker: nothing can serve it")


async def test_cancel_stops_a_long_generation(model_fleet: FleetProcs) -> None:
    async with FleetClient(model_fleet.settings) as c:
        i = rid()
        seen = 0
        t0 = time.monotonic()
        with pytest.raises(RequestCancelled):
            async for ev in c.stream("def long():", model="large", max_tokens=3000, timeout_s=120, request_id=i):
                if isinstance(ev, Chunk):
                    seen += 1
                    if seen == 1:
                        await c.cancel(i)
                elif isinstance(ev, Done):
                    raise AssertionError("generation ran to the end despite the cancel")
        assert time.monotonic() - t0 < 60
        await c.cancel("never-existed")  # harmless
        r = await c.generate("x", model="large", max_tokens=2, timeout_s=60)
        assert r.usage.completion_tokens >= 1
