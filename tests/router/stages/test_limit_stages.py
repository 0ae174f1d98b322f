"""The owner, rate-limit and budget stages in the router's pipeline, on plain data: a limited tenant's record
moves to its owner partition; there interactive requests over the rate are refused `rate_limited` with
`retry_after_ms`, batch requests are held, budgets refuse `budget_exceeded` until the period rolls over, and
a request decided again (a redo after a restart) is never counted twice."""

from __future__ import annotations

import json

import msgspec

from contracts import Codec, ErrorCode
from fleet.settings import Settings, TenantSettings
from fleet.tenants import mint_key
from router.accounts.account import Account
from router.pipeline import Pipeline, build_pipeline
from router.stages.base import Context, Forward, Hold, Move, Outcome, Reject
from router.views import Views

KEY, HASH = mint_key()
NOW = 1_790_000_000_000


def settings(**limits: object) -> Settings:
    t = msgspec.convert({"name": "acme", "api_key_hashes": [str(HASH)], **limits}, TenantSettings)
    return Settings(tenants=[t, TenantSettings(name="free", api_key_hashes=[])])


def run(
    s: Settings, views: Views, rid: str, topic: str = "llm.requests.t.acme", partition: int = 0, **kw: object
) -> Outcome:
    value = json.dumps({"id": rid, "reply_to": "llm.replies.acme.x", "prompt": "hello", "max_tokens": 10, **kw})
    headers = [("content-type", b"application/json"), ("fleet-api-key", KEY.encode())]
    ctx = Context(value.encode(), headers, NOW, NOW, topic=topic, partition=partition)
    return Pipeline(build_pipeline(s, views, Codec()), Codec()).run(ctx)[1]


def owned(s: Settings) -> Views:
    views = Views.from_settings(s)
    views.accounts.accounts["acme"] = Account.new(s.tenants[0], NOW)
    return views


def test_a_limited_tenants_record_moves_to_its_owner_partition_and_others_stay() -> None:
    s = settings(requests_per_s=1.0)
    views = owned(s)
    for topic, partition in (("llm.requests", 1), ("llm.requests.t.acme", 1)):
        v = run(s, views, "r1", topic, partition)
        assert v == Move("llm.requests.t.acme", 0, "acme")
    assert isinstance(run(s, views, "r1"), Forward)
    # a tenant without limits is decided where it lands
    free = Settings(tenants=[TenantSettings(name="acme", api_key_hashes=[str(HASH)])])
    assert isinstance(run(free, Views.from_settings(free), "r2", "llm.requests", 1), Forward)


def test_over_the_rate_interactive_is_refused_with_retry_after_and_batch_is_held() -> None:
    s = settings(requests_per_s=2.0, burst_requests=2)
    views = owned(s)
    assert isinstance(run(s, views, "a"), Forward) and isinstance(run(s, views, "b"), Forward)
    v = run(s, views, "c")
    assert isinstance(v, Reject) and v.code is ErrorCode.RATE_LIMITED and not v.to_dlq
    assert v.retry_after_ms == 500 and v.code.retriable
    held = run(s, views, "d", priority="batch")
    assert isinstance(held, Hold) and held.tenant == "acme"
    # a batch request that could not start before its deadline is refused, not held
    late = run(s, views, "e", priority="batch", timeout_ms=100)
    assert isinstance(late, Reject) and late.code is ErrorCode.RATE_LIMITED


def test_tokens_per_minute_counts_the_prompt_from_above_plus_max_tokens() -> None:
    s = settings(tokens_per_min=6000, burst_tokens=200)
    views = owned(s)
    # "hello" is 5 bytes + 48 template tokens + 10 max_tokens = 63 tokens: three fit in 200, the fourth not
    outcomes = [run(s, views, f"r{i}") for i in range(4)]
    assert [type(o).__name__ for o in outcomes] == ["Forward", "Forward", "Forward", "Reject"]


def test_budgets_refuse_until_the_period_rolls_over_and_a_redo_is_not_counted_twice() -> None:
    s = settings(daily_tokens=63 * 3)
    views = owned(s)
    assert all(isinstance(run(s, views, f"r{i}"), Forward) for i in range(3))
    v = run(s, views, "r3")
    assert isinstance(v, Reject) and v.code is ErrorCode.BUDGET_EXCEEDED and not v.code.retriable
    assert v.retry_after_ms is not None and 0 < v.retry_after_ms <= 86_400_000
    # the same ids decided again by a new owner (its dedup window empty): forwarded, not counted again
    fresh = Views.from_settings(s)
    fresh.accounts.accounts["acme"] = views.accounts.accounts["acme"]
    assert all(isinstance(run(s, fresh, f"r{i}"), Forward) for i in range(3))
    assert len(fresh.accounts.accounts["acme"].state.ledger.pending) == 3


def test_a_record_at_the_owner_partition_without_a_loaded_account_is_retried_not_decided() -> None:
    s = settings(daily_tokens=1000)
    v = run(s, Views.from_settings(s), "r1")
    assert isinstance(v, Reject) and v.code is ErrorCode.INTERNAL and v.code.retriable and not v.to_dlq


def test_batch_requests_take_their_models_batch_lane_and_are_not_refused_for_the_interactive_backlog() -> None:
    s = Settings()
    views = Views.from_settings(s)
    views.load.update("small", s.router.overload_max_backlog * 2, 0, 1.0)  # the interactive lane is backed up
    value = json.dumps({"id": "b", "reply_to": "llm.replies.x", "prompt": "hi", "model": "small", "priority": "batch"})
    ctx = Context(value.encode(), [("content-type", b"application/json")], NOW, NOW, topic="llm.requests")
    v = Pipeline(build_pipeline(s, views, Codec()), Codec()).run(ctx)[1]
    assert isinstance(v, Forward) and v.topics == ("llm.requests.small.batch",)
    other = value.replace('"batch"', '"interactive"').encode()
    interactive = Context(other, ctx.headers, NOW, NOW, topic="llm.requests")
    v = Pipeline(build_pipeline(s, views, Codec()), Codec()).run(interactive)[1]
    assert isinstance(v, Reject) and v.code is ErrorCode.OVERLOADED


def test_stages_with_nothing_configured_to_do_are_left_out_and_run_again_once_configured() -> None:
    """No tenants: the tenant stages are not run (an installation does not pay for what it does not use) and
    a request is forwarded as the default tenant; tenants without limits bring back the tenant stages but not
    the counters; one limited tenant brings back all of them."""

    def running(s: Settings) -> list[str]:
        return [st.name for st in Pipeline(build_pipeline(s, Views.from_settings(s), Codec()), Codec()).running]

    tenant_stages = ["authenticate", "tenant_limits", "allowed_models"]
    counters = ["owner", "rate_limit", "budget"]
    plain = running(Settings())
    assert not set(tenant_stages + counters) & set(plain)
    assert plain[0] == "decode" and plain[-1] == "route"
    unlimited = running(Settings(tenants=[TenantSettings(name="acme", api_key_hashes=[str(HASH)])]))
    assert set(tenant_stages) <= set(unlimited) and not set(counters) & set(unlimited)
    every = [st.name for st in build_pipeline(settings(daily_tokens=10), Views.from_settings(Settings()), Codec())]
    assert running(settings(daily_tokens=10)) == every
    s = Settings()
    value = json.dumps({"id": "d", "reply_to": "llm.replies.x", "prompt": "hello", "max_tokens": 10}).encode()
    ctx = Context(value, [("content-type", b"application/json")], NOW, NOW, topic="llm.requests")
    assert isinstance(Pipeline(build_pipeline(s, Views.from_settings(s), Codec()), Codec()).run(ctx)[1], Forward)
