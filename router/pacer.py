"""Paced batch requests: a `priority: batch` request over its tenant's rate is held by the router (the rate-limit
stage says `Hold`) instead of refused, and released, oldest first, as the tenant's rate admits it. Interactive
requests are decided as they come, so they go first. Pure: no Kafka; router/intake.py runs a released request
through the pipeline again and sends what it decides.

A held record stays in its partition's ledger (router/ledger.py), so the partition is committed only up to the
first held record: a router that dies holding requests leaves them to the partition's next owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from router.accounts.account import Account, Held
from router.accounts.view import AccountsView
from router.ledger import Ledger
from router.stages.base import Hold


@dataclass(frozen=True, slots=True)
class Released:
    tp: TopicPartition
    rec: ConsumerRecord[Any, Any]
    account: Account  # whose rate it took


class Pacer:
    def __init__(self, accounts: AccountsView, ledger: Ledger[TopicPartition]) -> None:
        self.accounts = accounts
        self.ledger = ledger

    def hold(self, tp: TopicPartition, rec: ConsumerRecord[Any, Any], h: Hold) -> bool:
        """Hold a paced batch record on its tenant's account; False when the account left this router while the
        batch's sends were in flight (a revoke): the caller leaves the record to be decided again."""
        account = self.accounts.get(h.tenant)
        if account is None:
            return False
        self.ledger(tp).hold(rec.offset, rec)
        account.held.append(Held((tp, rec.offset), h.tokens))
        return True

    def due(self, now_ms: int) -> list[Released]:
        """The held requests each tenant's rate admits now, oldest first, their rate taken; they leave the
        account's queue (the ledger keeps them until `done`)."""
        out: list[Released] = []
        for account in self.accounts.accounts.values():
            while account.held:
                h = account.held[0]
                tp, offset = h.key
                rec = self.ledger.held(tp).get(offset)
                if rec is None:  # its partition left this router
                    account.held.popleft()
                    continue
                if not h.taken:
                    if account.rate_wait(h.tokens, now_ms) is not None:
                        break
                    account.take_rate(h.tokens, now_ms)
                account.held.popleft()
                out.append(Released(tp, rec, account))
        return out

    def done(self, r: Released) -> None:
        """The released request reached its outcome (forwarded, or refused if its deadline passed meanwhile)."""
        part = self.ledger.get(r.tp)
        if part is not None:
            part.release(r.rec.offset)

    def again(self, failed: list[Released]) -> None:
        """Released requests whose sends failed retriably: held again at the front of their account, in order,
        their rate already taken (unless the account left this router: the partition's next owner redoes them)."""
        for r in reversed(failed):
            if self.accounts.get(r.account.settings.name) is r.account:
                r.account.held.appendleft(Held((r.tp, r.rec.offset), 0, taken=True))
