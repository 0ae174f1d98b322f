"""Budget: a tenant's tokens and cost per UTC day and month. The request's worst case (prompt tokens
estimated from above plus `max_tokens`, priced at the chosen model's rates) is reserved on the counters its
owning router holds; the worker's usage record settles it (router/accounts/store.py). Over a budget:
`budget_exceeded`, not retriable, with `retry_after_ms` until the period rolls over, no DLQ copy. A request
that already holds a reservation (a redo after a router restart) is not counted again."""

from __future__ import annotations

from contracts.messages import ErrorCode
from fleet.settings import Settings
from router.accounts.account import worst_case
from router.accounts.view import AccountsView
from router.stages.base import Context, Continue, Reject, Verdict


class Budget:
    name = "budget"

    def __init__(self, accounts: AccountsView, settings: Settings, *, active: bool = True) -> None:
        self._accounts = accounts
        self.active = active  # False: no tenant has a rate limit or budget
        self._settings = settings
        self._models = {m.name: m for m in settings.models}

    def __call__(self, ctx: Context) -> Verdict:
        req, t = ctx.request, ctx.tenant
        assert req is not None and ctx.model is not None, "budget runs after resolve_model"
        if t is None or not t.limited:
            return Continue(ctx)
        account = self._accounts.get(t.name)
        ct = ctx.content_type.value
        if account is None:
            msg = f"tenant {t.name!r}'s counters are not loaded on this router yet"
            return Reject(
                ErrorCode.INTERNAL, msg, req.id, req.reply_to, to_dlq=False, content_type=ct, retry_after_ms=1000
            )
        if account.admitted(req.id):
            return Continue(ctx)
        r = self._settings.router
        w = worst_case(req, self._models[ctx.model], r)
        over = account.over_budget(w, ctx.now_ms)
        if over is not None:
            msg = f"tenant {t.name!r} is over its {over.message}"
            return Reject(
                ErrorCode.BUDGET_EXCEEDED,
                msg,
                req.id,
                req.reply_to,
                to_dlq=False,
                content_type=ct,
                retry_after_ms=over.retry_after_ms,
            )
        deadline = req.deadline_ms if req.deadline_ms is not None else ctx.now_ms + self._settings.limits.max_timeout_ms
        account.reserve(req.id, w, deadline + r.reservation_grace_ms, ctx.now_ms)
        return Continue(ctx)
