"""Rate limit: a tenant's requests per second and tokens per minute (prompt tokens estimated from above plus
`max_tokens`), on the counters its owning router holds (router/stages/owner.py moved the record there).

Over a limit, an interactive request is refused `rate_limited` (retriable, with `retry_after_ms`, no DLQ
copy: nothing is wrong with it); a batch request is held and paced (`Hold`): the router releases held
requests in arrival order as the rate admits them, after any interactive request (router/pacer.py). A
batch request that could not start before its deadline, or one beyond `batch_hold_max` held, is refused
`rate_limited` instead. A request that already holds a reservation (a redo after a router restart) is not
counted again."""

from __future__ import annotations

from contracts.messages import ErrorCode, Priority
from fleet.settings import RouterSettings
from router.accounts.account import worst_case_tokens
from router.accounts.view import AccountsView
from router.stages.base import Context, Continue, Hold, Reject, Verdict


class RateLimit:
    name = "rate_limit"

    def __init__(self, accounts: AccountsView, r: RouterSettings, *, active: bool = True) -> None:
        self._accounts = accounts
        self._r = r
        self.active = active  # False: no tenant has a rate limit or budget

    def __call__(self, ctx: Context) -> Verdict:
        req, t = ctx.request, ctx.tenant
        assert req is not None, "rate_limit runs after decode"
        if t is None or not t.limited or ctx.paced:
            return Continue(ctx)
        ct = ctx.content_type.value
        account = self._accounts.get(t.name)
        if account is None:  # the owner stage sent it here, so the account loads with the partition: retry
            msg = f"tenant {t.name!r}'s counters are not loaded on this router yet"
            return Reject(
                ErrorCode.INTERNAL, msg, req.id, req.reply_to, to_dlq=False, content_type=ct, retry_after_ms=1000
            )
        if (t.requests_per_s is None and t.tokens_per_min is None) or account.admitted(req.id):
            return Continue(ctx)
        tokens = worst_case_tokens(req, self._r)
        batch = req.priority is Priority.BATCH
        limited = None if batch and account.held else account.rate_wait(tokens, ctx.now_ms)
        if batch and (limited is not None or account.held):
            wait_ms = limited.retry_after_ms if limited is not None else 0
            too_late = req.deadline_ms is not None and ctx.now_ms + wait_ms >= req.deadline_ms
            if len(account.held) < self._r.batch_hold_max and not too_late:
                return Hold(t.name, tokens)
            why = "its deadline comes first" if too_late else f"{len(account.held)} batch requests are held already"
            msg = f"tenant {t.name!r} is over its rate and this batch request cannot be paced: {why}"
            return Reject(
                ErrorCode.RATE_LIMITED,
                msg,
                req.id,
                req.reply_to,
                to_dlq=False,
                content_type=ct,
                retry_after_ms=wait_ms or 1000,
            )
        if limited is not None:
            msg = f"tenant {t.name!r} is over its {limited.which.replace('_', ' ')} limit"
            return Reject(
                ErrorCode.RATE_LIMITED,
                msg,
                req.id,
                req.reply_to,
                to_dlq=False,
                content_type=ct,
                retry_after_ms=limited.retry_after_ms,
            )
        account.take_rate(tokens, ctx.now_ms)
        return Continue(ctx)
