"""Fallback: a request whose model's breaker is open (router/views.py HealthView) goes to the first alternative in
its chain (router/policies/fallback.py) whose breaker admits it and which its tenant may use, at most
`fallback_max_moves` steps down the chain and while the retry budget lasts; the request is forwarded with the
asked-for model in the `fleet-requested-model` header, which the worker copies into `done`.

When no alternative can take it: the configured static reply, as a `done` marked `degraded: true` with no
serving model (`model` empty), answered by the router at once, well within the deadline; without one, a
retriable `overloaded` that says why. A cache (when the fleet has one) would be asked before the static reply;
there is none yet. Never silence, never a request parked behind a dead model."""

from __future__ import annotations

import msgspec

from contracts.messages import Done, ErrorCode, FinishReason, Timings, Usage
from fleet.settings import Settings, TenantSettings
from router.policies.breaker import BreakerState
from router.policies.fallback import Chains
from router.policies.tenants import Tenants
from router.stages.base import Answer, Context, Continue, Reject, Verdict
from router.views import HealthView


class Fallback:
    name = "fallback"

    def __init__(self, settings: Settings, health: HealthView, tenants: Tenants | None = None) -> None:
        r = settings.router
        tiers = {t.name: t.model for t in r.tiers if t.model in settings.model_names}
        self._chains = Chains(r.fallback, settings.model_names, tiers)  # a bad chain stops the start here
        self._health = health
        self._tenants = tenants
        self._max_moves = r.fallback_max_moves
        self._reply = r.degraded_reply

    def __call__(self, ctx: Context) -> Verdict:
        req, model, now = ctx.request, ctx.model, ctx.now_ms
        assert req is not None and model is not None, "fallback runs after resolve_model"
        health = self._health
        if health.admit(model, now):
            return Continue(ctx)
        why = f"model {model} is unavailable (breaker {health.state(model).value}: {health.breakers[model].reason})"
        for alt in self._chains.chain(model, ctx.tier)[: self._max_moves]:
            if not self._allowed(ctx.tenant, alt) or health.state(alt) is BreakerState.OPEN:
                continue
            if not health.budget.available(now):
                why += "; the retry budget is spent"
                break
            if not health.admit(alt, now):
                continue
            health.budget.take(now)
            routed = msgspec.structs.replace(req, model=alt)
            return Continue(msgspec.structs.replace(ctx, request=routed, model=alt, requested_model=model))
        else:
            why += "; no alternative in its chain is available"
        if self._reply is None:
            return Reject(
                ErrorCode.OVERLOADED, why, req.id, req.reply_to, to_dlq=False, content_type=ctx.content_type.value
            )
        done = Done(
            id=req.id,
            seq=0,
            text=self._reply,
            finish_reason=FinishReason.STOP,
            model="",
            usage=Usage(prompt_tokens=0, completion_tokens=0),
            timings=Timings(queue_ms=0.0, ttft_ms=0.0, tpot_ms=0.0, total_ms=0.0),
            tier=ctx.tier,
            requested_model=model,
            degraded=True,
        )
        return Answer(req.id, req.reply_to, done, ctx.content_type)

    def _allowed(self, tenant: TenantSettings | None, model: str) -> bool:
        return tenant is None or self._tenants is None or self._tenants.model_allowed(tenant, model, None)
