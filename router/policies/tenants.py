"""Tenants: who is asking (an intake topic that names the tenant, or an API key in `fleet-api-key`) and
what the tenant may do (reply topics, models). Pure: no Kafka, no clock; the stages ask, and carry out.

Without tenants configured there is one default tenant: nobody is authenticated, the body's `tenant` is
passed on as before, and only the fleet-wide rules apply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from contracts.messages import ErrorCode
from contracts.topics import Headers, Topics
from fleet.settings import Settings, TenantSettings
from fleet.tenants import KeyRing, key_values


@dataclass(frozen=True, slots=True)
class Identified:
    tenant: TenantSettings | None  # None: the default tenant (no tenants configured)
    via: str  # "default" | "topic" | "key"


@dataclass(frozen=True, slots=True)
class Refused:
    code: ErrorCode
    message: str  # never holds the key or any part of it


class Tenants:
    """The configured tenants, their keys and their rules."""

    def __init__(self, settings: Settings) -> None:
        self._topics: Topics = settings.kafka.topics
        self._by_name = {t.name: t for t in settings.tenants}
        self._keys = KeyRing.of(settings.tenants)
        self._reply_prefixes = {t.name: tuple(settings.reply_prefixes(t)) for t in settings.tenants}
        self._tiers = {t.name: t.model for t in settings.router.tiers}

    @property
    def configured(self) -> bool:
        return bool(self._by_name)

    @property
    def limited(self) -> bool:
        """Whether any tenant has counters (rate limits or budgets) that one router must own."""
        return any(t.limited for t in self._by_name.values())

    def identify(self, topic: str, headers: Iterable[tuple[str, bytes | None]]) -> Identified | Refused:
        """The tenant a record comes from: its intake topic's, else its API key's."""
        if not self._by_name:
            return Identified(None, "default")
        by_topic = self._topics.tenant_of_intake(topic)
        if by_topic is not None:
            t = self._by_name.get(by_topic)
            if t is not None:  # the broker's ACLs let only this tenant write here
                return Identified(t, "topic")
            return Refused(ErrorCode.UNAUTHENTICATED, "this intake topic belongs to no configured tenant")
        keys = key_values(headers)
        if not keys:
            return Refused(ErrorCode.UNAUTHENTICATED, f"an API key is required: send it in header `{Headers.API_KEY}`")
        if len(keys) > 1:  # which copy would count is a guess; one sender, one key
            return Refused(ErrorCode.UNAUTHENTICATED, f"{len(keys)} `{Headers.API_KEY}` headers; send exactly one")
        name = self._keys.tenant_of(keys[0])
        if name is None:
            return Refused(ErrorCode.UNAUTHENTICATED, "the API key is not valid")
        return Identified(self._by_name[name], "key")

    def reply_allowed(self, tenant: TenantSettings, reply_to: str) -> bool:
        return reply_to.startswith(self._reply_prefixes[tenant.name])

    def reply_prefixes(self, tenant: TenantSettings) -> tuple[str, ...]:
        return self._reply_prefixes[tenant.name]

    def model_allowed(self, tenant: TenantSettings, model: str, tier: str | None) -> bool:
        """Whether the tenant may run `model`, reached through `tier` (a tier name, or what "auto" chose;
        None when the request named the model). A tier in the list stands for its model too: asking for
        the model by name runs the same weights at the same price."""
        allowed = tenant.allowed_models
        if allowed is None or model in allowed or (tier is not None and tier in allowed):
            return True
        return any(self._tiers.get(a) == model for a in allowed)
