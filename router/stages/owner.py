"""Owner: a tenant with rate limits or budgets has one router that holds its counters, the one assigned
partition 0 of the tenant's intake topic (`llm.requests.t.<tenant>`). A record of that tenant anywhere else
(the shared intake, with its API key; another partition of the tenant's topic) is moved there, unchanged but
for its key header; there it is checked and counted against one set of counters, whichever router it
reached first. Producers that write straight to the tenant's topic (the client library does, for a tenant)
skip the move. Tenants without limits are decided where they land."""

from __future__ import annotations

from contracts.topics import Topics
from router.stages.base import Context, Continue, Move, Verdict

OWNER_PARTITION = 0


class Owner:
    name = "owner"

    def __init__(self, topics: Topics, *, active: bool = True) -> None:
        self._topics = topics
        self.active = active  # False: no tenant has counters to own

    def __call__(self, ctx: Context) -> Verdict:
        t = ctx.tenant
        if t is None or not t.limited:
            return Continue(ctx)
        home = self._topics.tenant_intake(t.name)
        if ctx.topic == home and ctx.partition == OWNER_PARTITION:
            return Continue(ctx)
        return Move(home, OWNER_PARTITION, t.name)
