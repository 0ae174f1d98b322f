"""Malformed and adversarial messages on the intake and control topics: each yields its documented
outcome (a typed error and a DLQ record, or a log line where no reply is possible), and the fleet
goes on serving."""

from __future__ import annotations

import json
import random
import uuid

import msgspec
import pytest

from contracts import Error, ErrorCode
from fleet.client import FleetClient
from tests.fixtures_kafka import FleetProcs
from tests.kafka_helpers import RawPeer, header

pytestmark = pytest.mark.slow

Case = tuple[str, bytes, bytes | None, ErrorCode, str | None]  # name, body, content-type, code, id answered on reply_to


def cases(reply: str, rng: random.Random) -> list[Case]:
    out: list[Case] = []
    last: list[str] = []

    def req(**kw: object) -> dict[str, object]:
        base: dict[str, object] = {"id": f"fz-{uuid.uuid4().hex[:12]}", "reply_to": reply, "prompt": "x"}
        base.update(kw)
        last[:] = [str(base["id"])]
        return base

    def rid(answered: bool) -> str | None:
        return last[0] if answered else None

    def js(obj: object) -> bytes:
        return json.dumps(obj).encode()

    wrong_types = [
        ("id", 17),
        ("reply_to", ["a"]),
        ("prompt", 5),
        ("max_tokens", "ten"),
        ("temperature", "hot"),
        ("top_p", None),
        ("stop", "END"),
        ("seed", 1.5),
        ("messages", "hi"),
        ("priority", "urgent"),
        ("metadata", [1, 2]),
        ("timeout_ms", "soon"),
        ("model", 3),
    ]
    for i in range(40):
        field, value = wrong_types[i % len(wrong_types)]
        body = req(**{field: value})
        if field == "messages":
            body.pop("prompt")
        answered = field not in ("id", "reply_to")
        out.append((f"type-{field}", js(body), b"application/json", ErrorCode.INVALID_REQUEST, rid(answered)))
    for i in range(25):  # numbers out of range
        field, value = rng.choice(
            [
                ("max_tokens", -rng.randint(1, 10**6)),
                ("max_tokens", 10**6 + i),
                ("temperature", 1e308),
                ("temperature", -1.0),
                ("top_p", 2.5),
                ("seed", -5),
                ("timeout_ms", -100),
                ("deadline_ms", -1),
            ]
        )
        out.append(
            (f"range-{field}", js(req(**{field: value})), b"application/json", ErrorCode.INVALID_REQUEST, rid(True))
        )
    for i in range(15):  # integers too large for int64
        out.append(
            (
                "huge-int",
                js(req()).replace(b'"prompt"', b'"max_tokens": 1' + b"0" * (25 + i) + b', "prompt"'),
                b"application/json",
                ErrorCode.INVALID_REQUEST,
                rid(True),
            )
        )
    for _ in range(20):  # huge strings
        size = 40_000 + rng.randint(0, 200_000)
        out.append(
            ("huge-prompt", js(req(prompt="y" * size)), b"application/json", ErrorCode.PROMPT_TOO_LONG, rid(True))
        )
    for i in range(10):
        out.append(
            ("huge-id", js(req(id="i" * (201 + i * 1000))), b"application/json", ErrorCode.INVALID_REQUEST, None)
        )
    for i in range(10):  # deep JSON in metadata: over the configured depth, still decodable
        depth = 20 + i * 40
        deep = b'{"a":' * depth + b"1" + b"}" * depth
        body = js(req()).replace(b'"prompt"', b'"metadata": ' + deep + b', "prompt"')
        out.append(("deep-metadata", body, b"application/json", ErrorCode.INVALID_REQUEST, rid(True)))
    for i in range(5):  # deeper than any decoder should follow: refused as undecodable, no reply
        depth = 5000 + i * 1000
        deep = b'{"a":' * depth + b"1" + b"}" * depth
        body = js(req()).replace(b'"prompt"', b'"metadata": ' + deep + b', "prompt"')
        out.append(("very-deep", body, b"application/json", ErrorCode.INVALID_ENCODING, None))
    for i in range(5):
        out.append(
            (
                "deep-array",
                b"[" * (1000 * (i + 1)) + b"]" * (1000 * (i + 1)),
                b"application/json",
                ErrorCode.INVALID_REQUEST,
                None,
            )
        )
    for _ in range(20):  # invalid UTF-8 and raw bytes
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
        out.append(("random-bytes", b"\xff" + junk, b"application/json", ErrorCode.INVALID_ENCODING, None))
    for _ in range(10):
        body = js(req()).replace(b'"prompt": "x"', b'"prompt": "\xff\xfe\xc3"')
        out.append(("bad-utf8", body, b"application/json", ErrorCode.INVALID_ENCODING, None))
    for _ in range(15):  # wrong or missing content types
        r = req()
        ct = rng.choice([b"text/plain", b"application/xml", b"", b"\xff\xfe"])
        out.append(("wrong-content-type", js(r), ct, ErrorCode.INVALID_ENCODING, rid(True)))
    for _ in range(15):
        body = msgspec.msgpack.encode(req())
        out.append(("msgpack-no-header", body, None, ErrorCode.INVALID_ENCODING, rid(True)))
    for i in range(10):
        out.append(
            ("msgpack-garbage", b"\xc1\xc1" + bytes([i]), b"application/msgpack", ErrorCode.INVALID_ENCODING, None)
        )
    for _ in range(10):
        out.append(("empty", b"", b"application/json", ErrorCode.INVALID_ENCODING, None))
    # router-side inputs of issue 9: each used to raise out of the router's loop or skip records
    mp = b"application/msgpack"
    for _ in range(3):
        out.append(
            (
                "msgpack-ext",
                msgspec.msgpack.encode(req(metadata={"x": msgspec.msgpack.Ext(1, b"\x00")})),
                mp,
                ErrorCode.INVALID_REQUEST,
                rid(True),
            )
        )
        out.append(
            (
                "msgpack-int-key",
                msgspec.msgpack.encode(req(metadata={"x": {7: 1}})),
                mp,
                ErrorCode.INVALID_REQUEST,
                rid(True),
            )
        )
        out.append(
            (
                "msgpack-bytes",
                msgspec.msgpack.encode(req(metadata={"x": b"\x00"})),
                mp,
                ErrorCode.INVALID_REQUEST,
                rid(True),
            )
        )
        out.append(
            (
                "timeout-2**64",
                msgspec.msgpack.encode(req(timeout_ms=2**64 - 1)),
                mp,
                ErrorCode.INVALID_REQUEST,
                rid(True),
            )
        )
        out.append(
            (
                "deadline-2**64",
                msgspec.msgpack.encode(req(deadline_ms=2**64 - 1)),
                mp,
                ErrorCode.INVALID_REQUEST,
                rid(True),
            )
        )
        out.append(
            ("tiny-temperature", js(req(temperature=1e-30)), b"application/json", ErrorCode.INVALID_REQUEST, rid(True))
        )
        out.append(
            ("long-tenant", js(req(tenant="t" * 100_000)), b"application/json", ErrorCode.INVALID_REQUEST, rid(True))
        )
    for size in (524_289, 900_000):  # over limits.max_request_bytes (the DLQ copy still fits the record limit)
        out.append(
            (
                "over-max-request-bytes",
                js(req(prompt="p" * size)),
                b"application/json",
                ErrorCode.INVALID_REQUEST,
                rid(True),
            )
        )
    for _ in range(10):
        out.append(
            (
                "not-an-object",
                js(rng.choice([[1, 2], "str", 3, None, True])),
                b"application/json",
                ErrorCode.INVALID_REQUEST,
                None,
            )
        )
    return out


async def test_fuzz_intake_and_control(model_fleet: FleetProcs) -> None:
    rng = random.Random(1234)
    reply = f"e2e.replies.fuzz-{uuid.uuid4().hex[:6]}"
    async with RawPeer(model_fleet.settings, reply) as peer:
        all_cases = cases(reply, rng)
        assert len(all_cases) >= 200
        for _, body, ct, _, _ in all_cases:
            await peer.send(body, content_type=ct)
        for k in range(30):  # garbage on the control topic: no reply is possible, workers log and go on
            await peer.send(
                bytes(rng.randrange(256) for _ in range(k * 7)), topic=model_fleet.settings.kafka.topics.control
            )
        await peer.send(b'{"type": "cancel"}', topic=model_fleet.settings.kafka.topics.control)
        await peer.send(b'{"type": "explode", "id": "x"}', topic=model_fleet.settings.kafka.topics.control)
        for name, body, _, code, answered_id in all_cases:
            rec = await peer.dlq_record(body, timeout_s=60)
            assert header(rec, "fleet-error-code") == code.value, (name, header(rec, "fleet-error-reason"))
            if answered_id is not None:
                err = await peer.reply(answered_id, Error)
                assert err.code is code, name
    async with FleetClient(model_fleet.settings) as c:
        r = await c.generate("def after_fuzz():", model="large", max_tokens=4, timeout_s=60)
        assert r.usage.completion_tokens >= 1
    for name in ("router", "worker-large", "worker-small"):
        assert model_fleet.procs[name].poll() is None, f"{name} died"
    from tests.router.test_router_outcomes import intake_fully_committed

    await intake_fully_committed(model_fleet)
