"""The accounts the rate-limit and budget stages read: the tenants whose counters this router owns, loaded from
their last snapshot when partition 0 of their intake topic was assigned here, dropped when it is revoked. Its
feed is the store's settlement loop (router/accounts/store.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from fleet.settings import Settings
from router.accounts.account import Account
from router.accounts.store import TenantStore


class AccountsView:
    name = "accounts"

    def __init__(self, settings: Settings) -> None:
        self.accounts: dict[str, Account] = {}
        self.store = TenantStore(settings, self)

    def get(self, tenant: str) -> Account | None:
        return self.accounts.get(tenant)

    def feed(self, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        return self.store.run(stop)
