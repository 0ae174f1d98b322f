"""Authenticate: the tenant comes from the intake topic (the topic names it; Kafka ACLs decide who may
write there) or from the API key in `fleet-api-key`, never from the body alone. A missing or wrong key is
refused `unauthenticated`, a body naming another tenant `forbidden`, both with a DLQ copy (which never
holds the key: fleet/records.py drops that header). The request goes on carrying the authenticated tenant,
so the workers' usage records bill it. Without tenants configured everything passes as before.

A refusal's error event goes only where the sender may write: an unauthenticated sender may write nowhere
(a reply to its `reply_to` let anyone inject error events into any tenant's reply stream), so it gets the
DLQ copy alone; an authenticated one gets its `forbidden` only under its own reply prefixes."""

from __future__ import annotations

import msgspec

from contracts.messages import ErrorCode
from router.policies.tenants import Refused, Tenants
from router.stages.base import Context, Continue, Reject, Verdict


class Authenticate:
    name = "authenticate"

    def __init__(self, tenants: Tenants) -> None:
        self._tenants = tenants
        self.active = tenants.configured  # without tenants every record passes as the default tenant

    def __call__(self, ctx: Context) -> Verdict:
        req = ctx.request
        assert req is not None, "authenticate runs after decode"
        ct = ctx.content_type.value
        who = self._tenants.identify(ctx.topic, ctx.headers)
        if isinstance(who, Refused):
            return Reject(who.code, who.message, req.id or None, None, to_dlq=True, content_type=ct)
        t = who.tenant
        if t is None:
            return Continue(ctx)
        if req.tenant is not None and req.tenant != t.name:
            msg = f"`tenant` {req.tenant[:128]!r} is not the tenant this request authenticated as"
            mine = req.reply_to if req.reply_to and self._tenants.reply_allowed(t, req.reply_to) else None
            return Reject(ErrorCode.FORBIDDEN, msg, req.id or None, mine, to_dlq=True, content_type=ct)
        routed = req if req.tenant == t.name else msgspec.structs.replace(req, tenant=t.name)
        return Continue(msgspec.structs.replace(ctx, request=routed, tenant=t))
