"""Each stage alone, on plain data (no Kafka): what it continues with and what it refuses."""

from __future__ import annotations

import json

from contracts import Codec, ContentType, ErrorCode, Request
from fleet.settings import Settings
from router.pipeline import Pipeline, build_pipeline
from router.policies.tenants import Tenants
from router.sends import Send, SendKind
from router.stages.base import Context, Continue, Drop, Forward, Reject
from router.stages.deadline import Deadline
from router.stages.decode import Decode
from router.stages.dedup import Dedup
from router.stages.overload import Overload
from router.stages.resolve_model import ResolveModel
from router.stages.route import Route
from router.stages.validate import InternalTopics, Validate
from router.views import DedupView, Views

S = Settings()
CODEC = Codec()
JSON = [("content-type", b"application/json")]


def forward_send(request_id: str, tenant: str | None = None) -> Send:
    """A forward as the loop hands it to the views' hooks."""
    return Send(SendKind.FORWARD, "llm.requests.small", b"", None, [], request_id=request_id, tenant=tenant)


def ctx(body: object = None, *, now: int = 1000, ts: int = 1000, **req: object) -> Context:
    raw = body if isinstance(body, bytes) else json.dumps(body or {"id": "a", "reply_to": "r", "prompt": "x"}).encode()
    c = Context(raw, list(JSON), ts, now)
    if req:
        c = Context(raw, list(JSON), ts, now, request=Request(**req))  # type: ignore[arg-type]
    return c


def test_decode_continues_with_the_typed_request_and_its_content_type() -> None:
    v = Decode(S, CODEC)(ctx({"id": "a", "reply_to": "r", "prompt": "hi"}))
    assert isinstance(v, Continue) and v.ctx.request is not None and v.ctx.request.prompt == "hi"
    assert v.ctx.content_type is ContentType.JSON


def test_decode_refuses_bad_bytes_to_the_dlq_and_an_unknown_content_type_with_a_salvaged_address() -> None:
    v = Decode(S, CODEC)(Context(b"\xff garbage", list(JSON), 0, 0))
    assert isinstance(v, Reject) and v.code is ErrorCode.INVALID_ENCODING and v.to_dlq and v.reply_to is None
    body = json.dumps({"id": "a", "reply_to": "r", "prompt": "x"}).encode()
    v = Decode(S, CODEC)(Context(body, [("content-type", b"text/plain")], 0, 0))
    assert isinstance(v, Reject) and v.to_dlq and (v.request_id, v.reply_to) == ("a", "r")


def test_decode_refuses_an_empty_body() -> None:
    v = Decode(S, CODEC)(Context(b"", list(JSON), 0, 0))
    assert isinstance(v, Reject) and v.code is ErrorCode.INVALID_ENCODING


def test_validate_refuses_a_reply_to_of_the_fleet_itself_without_a_reply() -> None:
    stage = Validate(S, InternalTopics(S), Tenants(S))
    v = stage(ctx(id="a", reply_to=S.kafka.topics.requests, prompt="x"))
    assert isinstance(v, Reject) and v.code is ErrorCode.FORBIDDEN and v.reply_to is None and v.to_dlq
    assert isinstance(stage(ctx(id="a", reply_to="r", prompt="x")), Continue)
    v = stage(ctx(id="a", reply_to="r", prompt="x", max_tokens=0))
    assert isinstance(v, Reject) and v.reply_to == "r"


def test_deadline_becomes_absolute_and_a_passed_one_is_refused_without_dlq() -> None:
    v = Deadline(S)(ctx(id="a", reply_to="r", prompt="x", timeout_ms=500, ts=10_000, now=10_001))
    assert isinstance(v, Continue) and v.ctx.request is not None
    assert v.ctx.request.deadline_ms == 10_500 and v.ctx.request.timeout_ms is None
    v = Deadline(S)(ctx(id="a", reply_to="r", prompt="x", timeout_ms=5, ts=1000, now=2000))
    assert isinstance(v, Reject) and v.code is ErrorCode.EXPIRED and not v.to_dlq


def test_resolve_model_auto_tier_and_unknown() -> None:
    stage = ResolveModel(S)
    v = stage(ctx(id="a", reply_to="r", prompt="Say hi.", max_tokens=16))
    assert isinstance(v, Continue) and (v.ctx.model, v.ctx.tier) == ("small", "simple") and v.ctx.score is not None
    assert v.ctx.request is not None and v.ctx.request.model == "small"
    v = stage(ctx(id="a", reply_to="r", prompt="x", model="complex"))
    assert isinstance(v, Continue) and (v.ctx.model, v.ctx.tier) == ("large", "complex")
    v = stage(ctx(id="a", reply_to="r", prompt="x", model="large"))
    assert isinstance(v, Continue) and (v.ctx.model, v.ctx.tier) == ("large", None)
    v = stage(ctx(id="a", reply_to="r", prompt="x", model="gpt-9"))
    assert isinstance(v, Reject) and v.code is ErrorCode.UNKNOWN_MODEL and v.to_dlq


def test_dedup_drops_an_id_in_the_window_or_already_in_this_batch() -> None:
    view = DedupView(window_s=10, max_entries=100)
    stage = Dedup(view)
    c = ctx(id="a", reply_to="r", prompt="x", now=1000)
    assert isinstance(stage(c), Continue)
    view.forwarding(forward_send("a"))  # being forwarded by this batch
    assert stage(c) == Drop("duplicate", "a")
    view.batch()
    assert isinstance(stage(c), Continue)
    view.forwarded(forward_send("a"), 1000)  # acknowledged: in the window for 10 s
    assert isinstance(stage(c), Drop)
    assert isinstance(stage(ctx(id="a", reply_to="r", prompt="x", now=12_000)), Continue)


def test_overload_refuses_a_model_over_its_bound_and_passes_an_unknown_load() -> None:
    views = Views.from_settings(S)
    stage = Overload(views.load)
    c = Context(b"", [], 0, 1000, request=Request(id="a", reply_to="r", prompt="x"), model="small")
    assert isinstance(stage(c), Continue)  # no load known yet
    views.load.update("small", S.router.overload_max_backlog, 0, 1.0)
    v = stage(c)
    assert isinstance(v, Reject) and v.code is ErrorCode.OVERLOADED and not v.to_dlq and v.reply_to == "r"


def test_overload_counts_the_capacity_the_health_view_has_already_heard() -> None:
    """A worker back after an outage: the requests queued meanwhile wait behind the capacity the health view has
    heard, not behind none at the dead period's drain rate (the resilience test's `overloaded` refusals right after
    its breaker went half-open, when a second status reader for the load view heard the worker a poll later)."""
    views = Views.from_settings(S)
    c = Context(b"", [], 0, 0, request=Request(id="a", reply_to="r", prompt="x", deadline_ms=20_000), model="small")
    views.load.update("small", 0, 0, 0.0)
    views.load.update("small", 36, 0, 10.0)  # 36 queued while nobody drained them: a rate near zero
    views.load.models["small"].fast_per_s = views.load.models["small"].slow_per_s = 1.6
    assert isinstance(Overload(views.load)(c), Reject)  # ~22 s behind no capacity: refused, as before
    views.health.workers("small", 1, 256, 10_000)  # the health view has heard the worker, capacity 256
    assert isinstance(Overload(views.load, views.health)(c), Continue)


def test_route_forwards_to_the_models_topic() -> None:
    c = Context(b"", [], 0, 0, request=Request(id="a", reply_to="r", prompt="x"), model="small", tier="simple")
    v = Route(S.kafka.topics)(c)
    assert isinstance(v, Forward) and v.topics == (S.kafka.topics.model("small"),) and v.tier == "simple"


def test_the_pipeline_runs_in_order_and_names_the_deciding_stage() -> None:
    views = Views.from_settings(S)
    stages = build_pipeline(S, views, CODEC)
    assert [s.name for s in stages] == [
        "cancel",
        "decode",
        "authenticate",
        "owner",
        "validate",
        "tenant_limits",
        "deadline",
        "resolve_model",
        "allowed_models",
        "dedup",
        "fallback",
        "overload",
        "rate_limit",
        "budget",
        "route",
    ]
    p = Pipeline(stages, CODEC)
    body = json.dumps({"id": "a", "reply_to": "r", "prompt": "x", "model": "small"}).encode()
    stage, out = p.run(Context(body, list(JSON), 1000, 1000))
    assert stage == "route" and isinstance(out, Forward) and out.model == "small"
    views.dedup.forwarding(forward_send("a"))
    assert p.run(Context(body, list(JSON), 1000, 1000)) == ("dedup", Drop("duplicate", "a"))
    stage, out = p.run(Context(b"{", list(JSON), 1000, 1000))
    assert stage == "decode" and isinstance(out, Reject)


def test_a_stage_that_raises_is_a_refusal_with_the_salvaged_address() -> None:
    class Boom:
        name = "boom"

        def __call__(self, ctx: Context) -> Continue:
            raise ValueError("no")

    body = json.dumps({"id": "a", "reply_to": "r", "prompt": "x"}).encode()
    stage, out = Pipeline([Boom()], CODEC).run(Context(body, list(JSON), 0, 0))
    assert stage == "boom" and isinstance(out, Reject) and out.code is ErrorCode.INVALID_REQUEST
    assert (out.request_id, out.reply_to, out.to_dlq) == ("a", "r", True)


def test_router_stats_count_every_verdict_by_stage_and_code() -> None:
    from router.sends import RouterStats

    st = RouterStats()
    routed = Context(b"", [], 0, 0, request=Request(id="a", reply_to="r", prompt="x"), model="small")
    st.verdict("route", Forward(routed, ("llm.requests.small",)))
    st.verdict("dedup", Drop("duplicate", "a"))
    st.verdict("decode", Reject(ErrorCode.INVALID_ENCODING, "m", None, None, to_dlq=True))
    st.verdict("decode", Reject(ErrorCode.INVALID_ENCODING, "m", None, None, to_dlq=True))
    assert st.verdicts == {"route.forward": 1, "dedup.duplicate": 1, "decode.invalid_encoding": 2}


def test_a_finished_request_is_forgotten_by_the_dedup_window_so_a_re_send_is_routed() -> None:
    from contracts.messages import UsageRecord

    view = DedupView(window_s=600, max_entries=100, tenants=True)
    stage = Dedup(view)
    c = ctx(id="a", reply_to="r", prompt="x", now=1000)
    view.forwarded(forward_send("a"), 1000)
    assert isinstance(stage(c), Drop)  # running: a re-send is a duplicate

    def usage(tenant: str | None) -> UsageRecord:
        return UsageRecord(
            id="a", model="small", tenant=tenant, prompt_tokens=1, completion_tokens=1, cost=0.0, ts_ms=0, finish="stop"
        )

    view.finished(usage("other"), 2000)  # another tenant's request of the same id finished: still running
    assert isinstance(stage(c), Drop)
    view.finished(usage(None), 2000)
    assert isinstance(stage(c), Continue)  # finished: routed again, and its worker answers with the same done
