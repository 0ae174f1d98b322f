"""Breaker transitions, chain validation, the retry budget and the fallback stage, on plain data (no Kafka, no
clock: the time is passed in)."""

from __future__ import annotations

import msgspec
import pytest
from structlog.testing import capture_logs

from contracts.codec import Codec
from contracts.messages import Done, ErrorCode, Request
from fleet.settings import RouterSettings, Settings, TenantSettings, TierSettings
from router.pipeline import build_pipeline
from router.policies.breaker import Breaker, BreakerConfig, BreakerState
from router.policies.fallback import ChainError, Chains, RetryBudget
from router.stages.base import Answer, Context, Continue, Forward, Reject
from router.stages.fallback import Fallback
from router.stages.route import Route
from router.views import HealthView, Views

CFG = BreakerConfig(window_ms=10_000, error_rate=0.05, min_requests=20, no_worker_ms=2_000, cooldown_ms=5_000, probes=2)


def live(now: int = 0) -> Breaker:
    b = Breaker("large", CFG, now)
    assert b.workers(1, now) is None
    return b


def test_error_rate_over_the_threshold_opens_with_enough_outcomes_only() -> None:
    b = live()
    for t in range(5):
        assert b.outcome(True, t, "usage expired") is None  # 5 failures of 5: below the minimum count
    b = live()
    for t in range(19):
        assert b.outcome(False, t, "usage stop") is None
    tr = b.outcome(True, 19, "dlq poison")  # 1 of 20 = 5%: not above
    assert tr is None and b.state is BreakerState.CLOSED
    tr = b.outcome(True, 20, "dlq poison")  # 2 of 21 = 9.5%
    assert tr is not None and tr.new is BreakerState.OPEN and "error rate 9.5%" in tr.reason and "poison" in tr.reason
    assert not b.admit(21)


def test_outcomes_leave_the_window() -> None:
    b = live()
    for t in range(19):
        b.outcome(False, t, "usage stop")
    b.outcome(True, 19, "x")
    # 20 s later the successes have left the window: one failure among few outcomes does not open
    assert b.outcome(True, 20_000, "x") is None and b.error_rate(20_000) == (1, 1)


def test_no_live_worker_for_the_configured_time_opens_then_cooldown_probes_and_a_success_closes() -> None:
    b = live(0)
    assert b.workers(0, 1_000) is None  # heartbeats expired, but only 1 s since the last live report
    tr = b.workers(0, 2_100)
    assert tr is not None and tr.new is BreakerState.OPEN and "no live worker for 2100 ms" in tr.reason
    assert b.tick(20_000) is None  # cool-down over, but nobody to probe
    tr = b.workers(2, 20_100)
    assert tr is not None and tr.new is BreakerState.HALF_OPEN and "2 live worker" in tr.reason
    assert b.admit(20_100) and b.admit(20_200) and not b.admit(20_300)  # two probes, the rest fall back
    assert b.admit(25_300)  # a probe with no outcome for a cool-down: one more
    tr = b.outcome(False, 25_400, "usage stop")
    assert tr is not None and tr.new is BreakerState.CLOSED and "probe succeeded" in tr.reason
    assert b.admit(25_500)


def test_a_failed_probe_reopens_and_stale_outcomes_while_open_are_ignored() -> None:
    b = live(0)
    b.workers(0, 3_000)
    assert b.state is BreakerState.OPEN
    assert b.outcome(False, 3_100, "usage stop") is None and b.state is BreakerState.OPEN  # sent before it opened
    tr = b.workers(1, 8_000)
    assert tr is not None and tr.new is BreakerState.HALF_OPEN
    tr = b.outcome(True, 8_100, "usage expired")
    assert tr is not None and tr.new is BreakerState.OPEN and "probe failed" in tr.reason
    assert b.tick(12_000) is None and b.tick(13_100) is not None  # a new cool-down from the reopening
    assert b.state.value == "half_open"


def test_a_model_never_seen_live_gets_the_start_grace_and_its_first_worker_closes_at_once() -> None:
    b = Breaker("ghost", CFG, 0)
    assert b.workers(0, 9_000) is None  # workers still loading: start_grace_ms (10 s)
    tr = b.workers(0, 10_000)
    assert tr is not None and tr.new is BreakerState.OPEN and not b.admit(10_000)
    tr = b.workers(1, 11_000)  # it opened for want of a worker, never for its answers: no probing
    assert tr is not None and tr.new is BreakerState.CLOSED and "first live worker" in tr.reason


def test_silence_while_the_feed_is_blind_does_not_open_and_workers_get_the_start_grace_after() -> None:
    b = live(0)
    b.blind(5_000)  # the broker did not answer: nobody could report
    assert b.workers(0, 6_000) is None and b.state is BreakerState.CLOSED
    assert b.workers(0, 14_900) is None  # within start_grace_ms (10 s) of the blindness
    tr = b.workers(0, 15_000)
    assert tr is not None and tr.new is BreakerState.OPEN


def test_half_open_with_no_live_worker_opens_again() -> None:
    b = live(0)
    b.workers(0, 3_000)
    b.workers(1, 9_000)
    assert b.state is BreakerState.HALF_OPEN
    b.workers(0, 10_000)
    assert b.state is BreakerState.HALF_OPEN  # within no_worker_ms of the last live report
    tr = b.workers(0, 11_000)
    assert tr is not None and tr.new is BreakerState.OPEN


MODELS = ["small", "medium", "large"]
TIERS = {"simple": "small", "complex": "large"}


def test_chains_follow_alternatives_and_tiers() -> None:
    c = Chains({"large": ["medium"], "medium": ["simple"], "complex": ["small"]}, MODELS, TIERS)
    assert c.chain("large", None) == ("medium", "small")
    assert c.chain("large", "complex") == ("small", "medium")  # the tier's chain first, then its model's
    assert c.chain("small", None) == ()


@pytest.mark.parametrize(
    ("chains", "named"),
    [
        ({"large": ["huge"]}, "'huge'"),
        ({"nope": ["small"]}, "'nope'"),
        ({"large": ["large"]}, "cycle large -> large"),
        ({"large": ["medium"], "medium": ["small"], "small": ["complex"]}, "cycle large -> medium -> small -> large"),
    ],
)
def test_a_bad_chain_is_an_error_that_names_it(chains: dict[str, list[str]], named: str) -> None:
    with pytest.raises(ChainError, match=named.replace("(", r"\(")):
        Chains(chains, MODELS, TIERS)


def settings(**router: object) -> Settings:
    tiers = [
        TierSettings(name="simple", model="small"),
        TierSettings(name="complex", model="large", max_score=float("inf")),
    ]
    # a model never seen live opens after 10 s here (`kill` looks at 20 s); the default waits minutes for loading
    defaults: dict[str, object] = {"breaker_start_grace_ms": 10_000}
    return msgspec.convert(
        {"router": {"tiers": [msgspec.to_builtins(t) for t in tiers], **defaults, **router}}, Settings
    )


def test_the_router_does_not_start_with_a_bad_chain() -> None:
    s = settings(fallback={"large": ["small"], "small": ["large"]})
    with pytest.raises(ChainError, match="cycle"):
        build_pipeline(s, Views.from_settings(s), Codec())


def test_the_retry_budget_is_a_token_bucket() -> None:
    b = RetryBudget(per_s=10.0, burst=2)
    assert b.take(0) and b.take(0) and not b.take(0)
    assert not b.take(50) and b.take(100)  # 0.1 s later: one more
    assert (b.spent, b.refused) == (3, 2)


def ctx(model: str = "large", tier: str | None = None, deadline_ms: int | None = 60_000) -> Context:
    req = Request(id="r1", reply_to="replies.x", prompt="hi", model=model, deadline_ms=deadline_ms)
    return Context(b"", [], 0, 10_000, request=req, model=model, tier=tier)


def kill(health: HealthView, model: str, now: int = 20_000) -> None:
    health.workers(model, 0, 0, now)
    assert health.state(model) is BreakerState.OPEN


def test_an_open_breaker_sends_the_request_to_the_first_healthy_alternative_and_says_which_was_asked() -> None:
    s = settings(fallback={"large": ["medium", "small"]})
    s = msgspec.structs.replace(s, models=[*s.models, msgspec.structs.replace(s.models[0], name="medium")])
    health = HealthView(s, 0)
    stage = Fallback(s, health)
    for m in ("small", "medium", "large"):
        health.workers(m, 1, 8, 9_000)
    assert isinstance(v := stage(ctx()), Continue) and v.ctx.model == "large"  # closed: untouched
    with capture_logs() as logs:
        kill(health, "large")
        kill(health, "medium")
    assert [(e["model"], e["new"]) for e in logs if e["event"] == "router.breaker"] == [
        ("large", "open"),
        ("medium", "open"),
    ]
    v = stage(ctx())
    assert isinstance(v, Continue) and v.ctx.model == "small" and v.ctx.request is not None
    assert v.ctx.request.model == "small" and v.ctx.requested_model == "large"
    f = Route(s.kafka.topics)(v.ctx)
    assert isinstance(f, Forward) and f.model == "small" and f.requested_model == "large"
    assert f.topics == (s.kafka.topics.model("small"),)
    assert health.budget.spent == 1


def test_max_moves_and_the_retry_budget_bound_rerouting() -> None:
    s = settings(fallback={"large": ["medium", "small"]}, fallback_max_moves=1, retry_budget_burst=1,
                 retry_budget_per_s=0.001)  # fmt: skip
    s = msgspec.structs.replace(s, models=[*s.models, msgspec.structs.replace(s.models[0], name="medium")])
    health = HealthView(s, 0)
    stage = Fallback(s, health)
    for m in ("small", "medium", "large"):
        health.workers(m, 1, 8, 9_000)
    kill(health, "large")
    kill(health, "medium")
    v = stage(ctx())  # small is two moves away
    assert isinstance(v, Reject) and v.code is ErrorCode.OVERLOADED and "no alternative" in v.message
    s2 = msgspec.structs.replace(s, router=msgspec.structs.replace(s.router, fallback_max_moves=2))
    stage = Fallback(s2, health)
    assert isinstance(stage(ctx()), Continue)
    v = stage(ctx())  # the budget held one reroute
    assert isinstance(v, Reject) and "retry budget" in v.message and v.retry_after_ms is None and not v.to_dlq


def test_every_model_in_the_chain_down_answers_the_static_reply_marked_degraded() -> None:
    s = settings(fallback={"complex": ["simple"]}, degraded_reply="We are busy; please try again shortly.")
    health = HealthView(s, 0)
    stage = Fallback(s, health)
    kill(health, "large")
    kill(health, "small")
    v = stage(ctx(tier="complex"))
    assert isinstance(v, Answer) and v.request_id == "r1" and v.reply_to == "replies.x"
    d = v.event
    assert isinstance(d, Done) and d.degraded and d.model == "" and d.requested_model == "large"
    assert d.text == "We are busy; please try again shortly." and d.tier == "complex" and d.usage.completion_tokens == 0
    decoded = Codec().decode_reply(Codec().encode(d))
    assert isinstance(decoded, Done) and decoded.degraded and decoded.requested_model == "large"


def test_a_model_without_a_chain_and_an_open_breaker_is_refused_overloaded_at_once() -> None:
    s = settings()
    health = HealthView(s, 0)
    kill(health, "large")
    v = Fallback(s, health)(ctx())
    assert isinstance(v, Reject) and v.code is ErrorCode.OVERLOADED and "no live worker" in v.message


def test_only_outcomes_that_say_the_model_failed_count() -> None:
    """Issue 23: what a client chooses (a short deadline, a prompt over the context, a bad field) never counts
    against the model; successes and the model's own failures (poison, internal) do."""
    s = settings(breaker_min_requests=4)
    health = HealthView(s, 0)
    health.workers("large", 1, 8, 0)
    for t in range(50):  # a flood of client-chosen outcomes: none counts
        health.usage("large", "expired", "", t)
        health.usage("large", "abandoned", "", t)
        for code in ("expired", "prompt_too_long", "invalid_request", "forbidden", "undecodable"):
            health.dead_letter("large", code, "", t)
    health.tick(60_000)
    assert health.state("large") is BreakerState.CLOSED and health.summary(100)["large"] == "closed 1w 0/0"
    for t in range(3):
        health.usage("large", "stop", "", 200 + t)
    health.dead_letter("large", "poison", "", 300)
    assert health.state("large") is BreakerState.OPEN  # 1 of 4 = 25% > 5%: the model's own failure counts
    assert health.summary(300)["large"].startswith("open 1w")


def test_one_tenants_failures_cannot_open_the_breaker_for_the_others() -> None:
    b = live()
    for t in range(40):  # tenant b is served; tenant a's requests all fail (a poison bait, say)
        assert b.outcome(False, t, "usage stop", "b") is None
        assert b.outcome(True, t, "dlq poison", "a") is None
    assert b.state is BreakerState.CLOSED and b.error_rate(40) == (40, 80)
    tr = None
    for t in range(40, 60):  # now b fails too: the model is unhealthy for everyone
        tr = tr or b.outcome(True, t, "dlq internal", "b")
    assert tr is not None and tr.new is BreakerState.OPEN and "without tenant 'a'" in tr.reason


def test_with_one_tenant_the_plain_rate_counts() -> None:
    b = live()
    for t in range(19):
        b.outcome(False, t, "usage stop", "only")
    b.outcome(True, 19, "dlq poison", "only")
    tr = b.outcome(True, 20, "dlq poison", "only")
    assert tr is not None and tr.new is BreakerState.OPEN and "without" not in tr.reason


def test_tenant_counts_leave_the_window_with_their_outcomes() -> None:
    b = live()
    for t in range(30):  # two tenants: a's failures alone do not open it
        b.outcome(True, t, "dlq poison", "a")
        b.outcome(False, t, "usage stop", "b")
    assert b.state is BreakerState.CLOSED
    b.outcome(False, 20_000, "usage stop", "b")  # those left the 10 s window: b alone remains
    assert b.error_rate(20_000) == (0, 1)
    for t in range(20_001, 20_020):
        b.outcome(False, t, "usage stop", "b")
    tr = b.outcome(True, 20_020, "dlq poison", "b")
    tr = tr or b.outcome(True, 20_021, "dlq poison", "b")
    assert tr is not None and tr.new is BreakerState.OPEN  # only b in the window: the plain rate


def test_router_settings_defaults_are_valid() -> None:
    r = RouterSettings()
    assert r.breaker_error_rate == 0.05 and r.fallback == {} and r.degraded_reply is None


def test_an_outcome_is_attributed_to_a_configured_tenant_or_to_nobody_in_particular() -> None:
    """The tenant an outcome names is input (a DLQ body, a usage record): only a configured name is taken as
    itself; anything else (another type, a huge string, an unknown name) is one bucket, and without tenants
    every outcome is the same tenant (so a client naming a new tenant per request cannot dodge the rule)."""
    from router.feeds import _tenant

    plain = settings()
    assert {_tenant(plain, v) for v in ("acme", "other", None, 7)} == {""}
    s = msgspec.structs.replace(plain, tenants=[msgspec.convert({"name": "acme"}, TenantSettings)])
    assert _tenant(s, "acme") == "acme"
    assert {_tenant(s, v) for v in ("nobody", "x" * 1_000_000, "")} == {"?"}
    assert {_tenant(s, v) for v in (None, 7, ["acme"], {"acme": 1})} == {""}
