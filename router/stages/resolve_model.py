"""Resolve the model: "auto" goes to the tier the complexity classifier's score picks (router/policies/classify.py)
among the tiers the request's tenant may use, a tier name to its model, a known model name to itself; anything else
is refused `unknown_model`. The classifier and the tiers' thresholds are resolved when the stage is built, so a
missing or broken artifact or a bad tier fails the router's start, not its requests."""

from __future__ import annotations

import time

import msgspec
import structlog

from contracts.messages import ErrorCode
from fleet.settings import RouterSettings, Settings, TenantSettings
from router.policies.classify import Classifier, Tier
from router.policies.tenants import Tenants
from router.policies.timing import Timings
from router.stages.base import Context, Continue, Reject, Verdict

log = structlog.get_logger(__name__)


class ResolveModel:
    name = "resolve_model"

    def __init__(self, settings: Settings, tenants: Tenants | None = None) -> None:
        self._tenants = tenants
        self._models = set(settings.model_names)
        self.classify_seconds = Timings()  # what classifying an "auto" request took (a scrape reads it)
        r = settings.router
        self._classifier: Classifier | None = None
        self._tier_list: list[Tier] = []
        if r.tiers == RouterSettings().tiers and not set(t.model for t in r.tiers) <= self._models:
            # tiers left at their defaults while the models are named otherwise: a fleet that never routes "auto"
            # (a configured tier that names no model is a start-up error, Classifier below)
            log.warning("router.auto_unavailable", reason="router.tiers not configured for these models")
        else:
            # the signals are logged at debug (router.forward): not worth their cost per request otherwise
            self._classifier = Classifier(
                r.tiers, settings.model_names, r.classifier_path, r.classify_max_chars, signals=settings.debug
            )
            self._tier_list = self._classifier.tiers
        self._tiers = {t.name: t for t in self._tier_list}

    def __call__(self, ctx: Context) -> Verdict:
        req = ctx.request
        assert req is not None, "resolve_model runs after decode"
        tier_name: str | None = None
        score: float | None = None
        signals: tuple[str, ...] = ()
        if req.model == "auto" and self._classifier is not None:
            t0 = time.perf_counter()
            d = self._classifier.decide(req, self._tiers_for(ctx.tenant))
            self.classify_seconds.observe(time.perf_counter() - t0)
            model, tier_name, score, signals = d.tier.model, d.tier.name, d.score, d.signals
        elif req.model in self._models:
            model = req.model
        elif req.model in self._tiers:
            model, tier_name = self._tiers[req.model].model, req.model
        else:
            auto = " or 'auto'" if self._classifier is not None else " ('auto' needs router.tiers)"
            msg = f"unknown model {req.model[:100]!r}; known: {sorted(self._models)}{auto}"
            return Reject(
                ErrorCode.UNKNOWN_MODEL, msg, req.id, req.reply_to, to_dlq=True, content_type=ctx.content_type.value
            )
        routed = req if model == req.model else msgspec.structs.replace(req, model=model)
        return Continue(
            msgspec.structs.replace(ctx, request=routed, model=model, tier=tier_name, score=score, signals=signals)
        )

    def _tiers_for(self, tenant: TenantSettings | None) -> list[Tier]:
        """The tiers "auto" may choose for this tenant: those it may use (all of them when it has no list, or
        when it may use none: allowed_models then refuses whatever is chosen)."""
        if tenant is None or tenant.allowed_models is None or self._tenants is None:
            return self._tier_list
        tenants = self._tenants
        allowed = [t for t in self._tier_list if tenants.model_allowed(tenant, t.model, t.name)]
        return allowed or self._tier_list
