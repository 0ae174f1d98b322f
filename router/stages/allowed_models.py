"""Allowed models: with tenants configured, a tenant with `allowed_models` may run only those models and
tiers (a model by its name; a tier by its name or as what "auto" chose); anything else is refused
`forbidden`, with a DLQ copy."""

from __future__ import annotations

from contracts.messages import ErrorCode
from router.policies.tenants import Tenants
from router.stages.base import Context, Continue, Reject, Verdict


class AllowedModels:
    name = "allowed_models"

    def __init__(self, tenants: Tenants) -> None:
        self._tenants = tenants
        self.active = tenants.configured  # the default tenant may run every model

    def __call__(self, ctx: Context) -> Verdict:
        req, t = ctx.request, ctx.tenant
        assert req is not None and ctx.model is not None, "allowed_models runs after resolve_model"
        if t is None or self._tenants.model_allowed(t, ctx.model, ctx.tier):
            return Continue(ctx)
        chosen = f"model {ctx.model!r}" + (f" (tier {ctx.tier!r})" if ctx.tier else "")
        msg = f"tenant {t.name!r} may not use {chosen}; allowed: {t.allowed_models}"
        return Reject(ErrorCode.FORBIDDEN, msg, req.id, req.reply_to, to_dlq=True, content_type=ctx.content_type.value)
