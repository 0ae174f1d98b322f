"""The worker's side of tenant isolation, without Kafka: the reply_to re-check, answers remembered per
(tenant, id), and cancels that reach only the sender's own requests."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from contracts import Codec
from contracts.messages import Done, ErrorCode, FinishReason, Request, Timings, Usage
from fleet.settings import LatencySettings, ModelSettings, Settings, TenantSettings
from fleet.tenants import mint_key
from worker.control import Control
from worker.driver import EngineDriver, Update
from worker.engine.api import FinishKind
from worker.engine.simulated import ByteTokenizer, SimulatedEngine
from worker.inputs import prompt_token_ids, reply_refusal
from worker.replies import Replies

KEY_A, HASH_A = mint_key()
KEY_B, HASH_B = mint_key()
TENANTS = Settings(
    tenants=[
        TenantSettings(name="a", api_key_hashes=[str(HASH_A)]),
        TenantSettings(name="b", api_key_hashes=[str(HASH_B)], reply_prefixes=["b.out."]),
    ]
)
DEFAULT = Settings()


def req(reply_to: str, tenant: str | None = None, rid: str = "x") -> Request:
    return Request(id=rid, reply_to=reply_to, prompt="hi", tenant=tenant, max_tokens=10_000)


@pytest.mark.parametrize(
    "topic", ["llm.requests", "llm.requests.small", "llm.requests.t.a", "llm.control", "llm.usage"]
)
def test_the_worker_refuses_replies_to_the_fleets_own_topics(topic: str) -> None:
    assert reply_refusal(DEFAULT, req(topic)) is not None
    assert reply_refusal(TENANTS, req(topic, "a")) is not None


def test_with_tenants_the_worker_rechecks_the_tenants_reply_prefixes() -> None:
    assert reply_refusal(DEFAULT, req("anything")) is None
    assert reply_refusal(DEFAULT, req("llm.replies.x")) is None
    assert reply_refusal(TENANTS, req("llm.replies.a.1", "a")) is None
    assert reply_refusal(TENANTS, req("b.out.1", "b")) is None
    for r in (req("b.out.1", "a"), req("llm.replies.a.1", "b"), req("llm.replies.a.1", None), req("x", "zzz")):
        assert reply_refusal(TENANTS, r) is not None


def test_answers_are_remembered_per_tenant_and_id() -> None:
    replies = Replies(DEFAULT, ModelSettings(name="m", path="none"), None, None, None, Codec())  # type: ignore[arg-type]
    done = Done(
        id="x",
        seq=0,
        text="attacker's text",
        finish_reason=FinishReason.STOP,
        model="m",
        usage=Usage(1, 1),
        timings=Timings(queue_ms=0, ttft_ms=0, tpot_ms=0, total_ms=0),
    )
    replies._remember_answer("b", "x", done)
    assert replies.answered("b", "x") is done
    assert replies.answered("a", "x") is None and replies.answered(None, "x") is None


def driver() -> EngineDriver:
    engine = SimulatedEngine(tokens_per_s=500.0, max_running=4)
    lat = LatencySettings(chunk_interval_ms=0, chunk_max_tokens=1)
    return EngineDriver(engine, ByteTokenizer(), model="m", max_model_len=4096, latency=lat, max_attempts=3)


def start(d: EngineDriver, r: Request) -> str:
    return d.add(r, prompt_token_ids(r, d.tokenizer, d.max_model_len), intake_s=time.time()).run_id


async def finished_by_tenant(d: EngineDriver) -> dict[str | None, FinishKind]:
    """Step until a run finishes (the others run 10,000 tokens: far longer than this waits)."""
    out: dict[str | None, FinishKind] = {}
    while not out:
        upd = await asyncio.wait_for(d.step(), 10)
        for ev in upd.requests:
            if ev.finished is not None:
                out[ev.state.request.tenant] = ev.finished
    return out


async def test_a_tenants_cancel_stops_only_its_own_run_of_a_shared_id() -> None:
    d = driver()
    start(d, req("r", "a"))
    start(d, req("r", "b"))
    await d.step()
    assert d.cancel("x", tenant="b", any_tenant=False).requests == []
    got = await finished_by_tenant(d)
    assert got == {"b": FinishKind.CANCELLED}, got
    assert len(d.states) == 1 and next(iter(d.states.values())).request.tenant == "a"
    d.cancel("x")  # the default tenant's cancel (no tenants configured) stops every run of the id
    assert (await finished_by_tenant(d)) == {"a": FinishKind.CANCELLED}
    assert not d.states


@dataclass
class FakeDriver:
    by_request: dict[str, set[str]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def cancel(self, request_id: str, **kw: Any) -> Update:
        self.calls.append((request_id, kw))
        return Update(at_s=0.0)


class FakeReplies:
    def deliver(self, upd: Update) -> None:
        pass


@dataclass
class Rec:
    value: bytes
    headers: list[tuple[str, bytes]]
    offset: int = 0
    key: bytes | None = None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("fleet-api-key", KEY_A.encode())], [("x", {"tenant": "a", "any_tenant": False})]),
        ([("fleet-api-key", KEY_B.encode())], [("x", {"tenant": "b", "any_tenant": False})]),
        ([], []),
        ([("fleet-api-key", b"fk_wrong")], []),
        ([("fleet-api-key", KEY_A.encode()), ("fleet-api-key", KEY_A.encode())], []),
        ([("fleet-api-key", b"\xff" * 100_000)], []),
    ],
)
def test_with_tenants_a_cancel_needs_the_senders_key(
    headers: list[tuple[str, bytes]], expected: list[tuple[str, dict[str, Any]]]
) -> None:
    fd = FakeDriver()
    control = Control(TENANTS, fd, FakeReplies(), Codec())  # type: ignore[arg-type]
    control.on_record(Rec(json.dumps({"type": "cancel", "id": "x"}).encode(), headers))  # type: ignore[arg-type]
    assert fd.calls == expected


def test_a_cancel_relayed_from_a_tenants_intake_counts_only_with_the_routers_mac() -> None:
    """router/stages/cancel.py relays a tenant's cancel keyed by the tenant and signed: the worker stops that
    tenant's runs of the id; the same record unsigned, signed for another key, or naming an unknown tenant stops
    nothing."""
    import msgspec

    from fleet.record_mac import Kind, record_mac

    secret = "worker-control-test-key-0123456789"
    signed = msgspec.structs.replace(TENANTS, kafka=msgspec.structs.replace(TENANTS.kafka, record_key=secret))
    value = json.dumps({"type": "cancel", "id": "x"}).encode()
    mac, other = record_mac(secret), record_mac("another-key-of-the-same-length-00")
    assert mac is not None and other is not None
    cases = [
        (b"a", [mac.header(Kind.CANCEL, b"a", value)], [("x", {"tenant": "a", "any_tenant": False})]),
        (b"a", [], []),  # unsigned: anyone who can write llm.control could name any tenant
        (b"a", [other.header(Kind.CANCEL, b"a", value)], []),
        (b"b", [mac.header(Kind.CANCEL, b"a", value)], []),  # signed for a, keyed b
        (b"zz", [mac.header(Kind.CANCEL, b"zz", value)], []),  # not a configured tenant
    ]
    for key, headers, expected in cases:
        fd = FakeDriver()
        control = Control(signed, fd, FakeReplies(), Codec())  # type: ignore[arg-type]
        control.on_record(Rec(value, headers, key=key))  # type: ignore[arg-type]
        assert fd.calls == expected, (key, headers)


def test_without_tenants_any_cancel_stops_the_id() -> None:
    fd = FakeDriver()
    control = Control(DEFAULT, fd, FakeReplies(), Codec())  # type: ignore[arg-type]
    control.on_record(Rec(json.dumps({"type": "cancel", "id": "x"}).encode(), []))  # type: ignore[arg-type]
    assert fd.calls == [("x", {})]
    assert ErrorCode.FORBIDDEN.value == "forbidden" and not ErrorCode.UNAUTHENTICATED.retriable
