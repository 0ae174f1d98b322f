"""The tenant stages alone and in the pipeline, on plain data: authenticate (topic, key, default tenant),
where replies may go, the per-tenant limits and defaults, allowed models, and dedup by (tenant, id).
Keys in headers are fuzzed: nothing crashes, nothing but the right key authenticates."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import msgspec
import pytest

from contracts import Codec, ContentType, ErrorCode, Request
from contracts.messages import Priority
from fleet.settings import Settings, TenantSettings
from fleet.tenants import mint_key
from router.pipeline import Pipeline, build_pipeline
from router.policies.tenants import Tenants
from router.sends import Send, SendKind
from router.stages.allowed_models import AllowedModels
from router.stages.authenticate import Authenticate
from router.stages.base import Context, Continue, Drop, Forward, Outcome, Reject, Verdict
from router.stages.tenant_limits import TenantLimits
from router.stages.validate import InternalTopics, Validate
from router.views import Views

CODEC = Codec()
KEY_A, HASH_A = mint_key()
KEY_B, HASH_B = mint_key()
S = Settings(
    tenants=[
        TenantSettings(
            name="alpha",
            api_key_hashes=[str(HASH_A)],
            allowed_models=["simple"],
            max_tokens=100,
            default_priority=Priority.BATCH,
            default_timeout_ms=7000,
        ),
        TenantSettings(name="beta", api_key_hashes=[str(HASH_B)], reply_prefixes=["beta.out."]),
        TenantSettings(name="gamma"),  # its intake topic is its only way in
    ]
)
T = Tenants(S)
DEFAULT = Settings()
CT = [("content-type", b"application/json")]


def forward_send(request_id: str, tenant: str | None = None) -> Send:
    """A forward as the loop hands it to the views' hooks."""
    return Send(SendKind.FORWARD, "llm.requests.small", b"", None, [], request_id=request_id, tenant=tenant)


def body(**kw: object) -> bytes:
    return json.dumps({"id": "r1", "reply_to": "llm.replies.alpha.x", "prompt": "Say hi.", **kw}).encode()


def decoded(value: bytes, headers: Sequence[tuple[str, bytes | None]], topic: str = "llm.requests") -> Context:
    req = CODEC.decode_request(value, ContentType.JSON)
    return Context(value, list(headers), 1000, 1000, request=req, topic=topic)


def auth(value: bytes, headers: Sequence[tuple[str, bytes | None]], topic: str = "llm.requests") -> Verdict:
    return Authenticate(T)(decoded(value, headers, topic))


def run(
    settings: Settings, value: bytes, headers: Sequence[tuple[str, bytes | None]], topic: str = "llm.requests"
) -> tuple[str, Outcome]:
    p = Pipeline(build_pipeline(settings, Views.from_settings(settings), CODEC), CODEC)
    return p.run(Context(value, [*CT, *headers], 1000, 1000, topic=topic))


# -- authenticate ------------------------------------------------------------------------------------
def test_a_valid_key_names_the_tenant_and_the_request_carries_it() -> None:
    v = auth(body(), [("fleet-api-key", KEY_A.encode())])
    assert isinstance(v, Continue) and v.ctx.tenant is not None and v.ctx.tenant.name == "alpha"
    assert v.ctx.request is not None and v.ctx.request.tenant == "alpha"
    v = auth(body(tenant="beta"), [("fleet-api-key", KEY_B.encode())])
    assert isinstance(v, Continue) and v.ctx.request is not None and v.ctx.request.tenant == "beta"


def test_a_tenant_intake_topic_authenticates_by_topic_without_a_key() -> None:
    v = auth(body(), [], topic=S.kafka.topics.tenant_intake("gamma"))
    assert isinstance(v, Continue) and v.ctx.tenant is not None and v.ctx.tenant.name == "gamma"
    v = auth(body(), [], topic="llm.requests.t.nobody")  # not configured: nobody owns it
    assert isinstance(v, Reject) and v.code is ErrorCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("fleet-api-key", b"")],
        [("fleet-api-key", None)],
        [("fleet-api-key", b"fk_wrong")],
        [("fleet-api-key", KEY_A.encode()[:-1])],
        [("fleet-api-key", KEY_A.encode() + b"\x00")],
        [("fleet-api-key", KEY_A.encode()), ("fleet-api-key", KEY_A.encode())],  # duplicated copies
        [("fleet-api-key", KEY_A.encode()), ("FLEET-API-KEY", KEY_B.encode())],
        [("fleet-api-key", b"\xff\xfe\x00" * 1000)],  # binary, not UTF-8
        [("fleet-api-key", KEY_A.encode() * 1000)],  # huge
        [("fleet-api-key ", KEY_A.encode())],  # another header's name
    ],
)
def test_missing_wrong_or_odd_keys_are_unauthenticated_with_a_dlq_copy(headers: list[tuple[str, bytes | None]]) -> None:
    v = auth(body(), headers)
    if headers and headers[0][0] == "fleet-api-key " and len(headers) == 1:
        assert isinstance(v, Reject) and "required" in v.message
    assert isinstance(v, Reject) and v.code is ErrorCode.UNAUTHENTICATED and v.to_dlq
    # nobody authenticated, so nowhere to write: the DLQ copy alone (a reply to alpha's topic was an injection)
    assert (v.request_id, v.reply_to) == ("r1", None)
    assert KEY_A not in v.message and KEY_B not in v.message


def test_fuzzed_key_headers_never_crash_and_never_authenticate() -> None:
    rng = random.Random(12)
    good = KEY_A.encode()
    for _ in range(2000):
        kind = rng.randrange(6)
        if kind == 0:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        elif kind == 1:  # near misses of the real key
            b = bytearray(good)
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            raw = bytes(b)
        elif kind == 2:
            raw = good[: rng.randrange(len(good))]
        elif kind == 3:
            raw = good + bytes([rng.randrange(256)])
        elif kind == 4:
            raw = b"x" * rng.randrange(10_000, 200_000)
        else:
            raw = rng.choice([b"", b" ", good.lower(), good.upper(), KEY_A.encode("utf-16")])
        copies = rng.choice([1, 1, 1, 2, 50])
        name = rng.choice(["fleet-api-key", "Fleet-Api-Key", "fleet-api-key"])
        headers: list[tuple[str, bytes | None]] = [(name, raw)] * copies
        if rng.random() < 0.2:
            headers.insert(0, ("fleet-api-key", good))  # the right key beside a bad copy still fails
        stage, v = run(S, body(), headers)
        assert isinstance(v, Reject) and v.code is ErrorCode.UNAUTHENTICATED, (stage, v)
        assert KEY_A not in v.message


def test_a_body_tenant_other_than_the_authenticated_one_is_forbidden() -> None:
    v = auth(body(tenant="beta"), [("fleet-api-key", KEY_A.encode())])
    assert isinstance(v, Reject) and v.code is ErrorCode.FORBIDDEN and v.to_dlq and v.reply_to == "llm.replies.alpha.x"
    # naming beta with a reply_to under beta's prefix: refused, and nothing written into beta's stream
    v = auth(body(tenant="beta", reply_to="beta.out.inbox"), [("fleet-api-key", KEY_A.encode())])
    assert isinstance(v, Reject) and v.code is ErrorCode.FORBIDDEN and v.to_dlq and v.reply_to is None
    v = auth(body(tenant="alpha"), [], topic=S.kafka.topics.tenant_intake("gamma"))
    assert isinstance(v, Reject) and v.code is ErrorCode.FORBIDDEN


def test_without_tenants_everyone_is_the_default_tenant_and_the_body_tenant_passes_unchanged() -> None:
    stage, v = run(DEFAULT, body(tenant="whoever", reply_to="replies"), [])
    assert stage == "route" and isinstance(v, Forward) and v.request.tenant == "whoever" and v.tenant is None
    stage, v = run(DEFAULT, body(reply_to="replies"), [("fleet-api-key", b"anything")])  # ignored
    assert isinstance(v, Forward) and v.request.tenant is None


# -- where replies may go ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "topic",
    [
        "llm.requests",
        "llm.requests.small",
        "llm.requests.t.alpha",
        "llm.requests.dlq",
        "llm.control",
        "llm.fleet.status",
        "llm.usage",
        "llm.progress",
        "llm",
    ],
)
def test_a_reply_to_among_the_fleets_own_topics_is_forbidden_without_a_reply(topic: str) -> None:
    for settings in (DEFAULT, S):
        stage, v = run(settings, body(reply_to=topic), [("fleet-api-key", KEY_A.encode())])
        assert stage == "validate" and isinstance(v, Reject) and v.code is ErrorCode.FORBIDDEN
        assert v.reply_to is None and v.to_dlq


def test_a_tenant_may_reply_only_under_its_prefixes() -> None:
    key = [("fleet-api-key", KEY_B.encode())]
    assert isinstance(run(S, body(reply_to="beta.out.1"), key)[1], Forward)
    for other in ("llm.replies.alpha.x", "llm.replies", "beta.outx", "replies"):
        stage, v = run(S, body(reply_to=other), key)
        assert stage == "validate" and isinstance(v, Reject) and v.code is ErrorCode.FORBIDDEN, other
        assert v.reply_to is None and v.to_dlq
    # the default prefix is `<prefix>.replies.<tenant>.`: alpha does not own "alphabet"'s topics
    stage, v = run(S, body(reply_to="llm.replies.alphabet.x"), [("fleet-api-key", KEY_A.encode())])
    assert isinstance(v, Reject) and v.code is ErrorCode.FORBIDDEN
    assert Validate(S, InternalTopics(S), T).name == "validate"


# -- limits, defaults, allowed models ----------------------------------------------------------------
def test_a_tenant_max_tokens_ceiling_refuses_saying_the_ceiling() -> None:
    stage, v = run(S, body(max_tokens=101), [("fleet-api-key", KEY_A.encode())])
    assert stage == "tenant_limits" and isinstance(v, Reject) and v.code is ErrorCode.INVALID_REQUEST
    assert "100" in v.message and v.to_dlq
    assert isinstance(run(S, body(max_tokens=100), [("fleet-api-key", KEY_A.encode())])[1], Forward)


def test_tenant_defaults_fill_what_the_request_leaves_out() -> None:
    _, v = run(S, body(), [("fleet-api-key", KEY_A.encode())])
    assert isinstance(v, Forward) and v.request.priority is Priority.BATCH
    assert v.request.max_tokens == 100  # not said: the contract's default 128 is fitted to the ceiling
    assert v.request.deadline_ms == 1000 + 7000  # the default timeout, made absolute by the deadline stage
    _, v = run(S, body(priority="interactive", timeout_ms=2000), [("fleet-api-key", KEY_A.encode())])
    assert isinstance(v, Forward) and v.request.priority is Priority.INTERACTIVE and v.request.deadline_ms == 3000
    # msgpack bodies too
    raw = msgspec.msgpack.encode({"id": "m", "reply_to": "llm.replies.alpha.x", "prompt": "hi"})
    ctx = Context(raw, [("content-type", b"application/msgpack")], 1000, 1000, tenant=S.tenants[0])
    ctx = msgspec.structs.replace(ctx, request=Request(id="m", reply_to="x", prompt="hi"))
    ctx = msgspec.structs.replace(ctx, content_type=ContentType.MSGPACK)
    v2 = TenantLimits()(ctx)
    assert isinstance(v2, Continue) and v2.ctx.request is not None and v2.ctx.request.priority is Priority.BATCH


def test_allowed_models_by_model_tier_or_auto() -> None:
    key = [("fleet-api-key", KEY_A.encode())]  # alpha may use the "simple" tier (model small) only
    assert isinstance(run(S, body(model="simple"), key)[1], Forward)
    assert isinstance(run(S, body(model="auto"), key)[1], Forward)  # a short prompt: simple
    assert isinstance(run(S, body(model="small"), key)[1], Forward)  # a tier stands for its model
    for model in ("large", "complex"):
        stage, v = run(S, body(model=model), key)
        assert stage == "allowed_models" and isinstance(v, Reject) and v.code is ErrorCode.FORBIDDEN, model
        assert v.to_dlq and v.reply_to == "llm.replies.alpha.x" and "simple" in v.message
    # "auto" chooses among the tiers the tenant may use: a prompt the classifier scores complex still goes to
    # alpha's one allowed tier instead of being refused
    hard = "Prove, step by step, that the algorithm below is correct and analyse its complexity. " * 40
    assert run(DEFAULT, body(model="auto", prompt=hard), [])[1].model == "large"  # type: ignore[union-attr]
    stage, v = run(S, body(model="auto", prompt=hard), key)
    assert isinstance(v, Forward) and v.model == "small", (stage, v)
    assert not T.model_allowed(S.tenants[0], "large", "complex")
    assert T.model_allowed(S.tenants[1], "large", "complex")  # beta: allowed_models None, all
    assert AllowedModels(T).name == "allowed_models"


# -- isolation -----------------------------------------------------------------------------------------
def test_dedup_is_keyed_by_tenant_and_id() -> None:
    views = Views.from_settings(S)
    p = Pipeline(build_pipeline(S, views, CODEC), CODEC)

    def go(key: str, reply_to: str) -> Outcome:
        return p.run(Context(body(reply_to=reply_to), [*CT, ("fleet-api-key", key.encode())], 1000, 1000))[1]

    v = go(KEY_B, "beta.out.x")  # an attacker pre-sends the victim's id
    assert isinstance(v, Forward) and v.tenant == "beta"
    views.dedup.forwarded(forward_send("r1", "beta"), 1000)
    assert isinstance(go(KEY_B, "beta.out.x"), Drop)  # its own re-send is a duplicate
    v = go(KEY_A, "llm.replies.alpha.x")  # the victim's request is not shadowed
    assert isinstance(v, Forward) and v.tenant == "alpha" and v.request.tenant == "alpha"
