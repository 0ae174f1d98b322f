"""State the stages read, fed by the Kafka loop and its tasks and handed to the stages: the dedup window with
the ids this batch already forwards, each model's load (router/feeds.py keeps it current from the model
topics' offsets and the status topic), and the accounts of the tenants this router owns (the rate-limit and
budget stages take from them; router/tenant_store.py loads, settles and snapshots them)."""

from __future__ import annotations

from dataclasses import dataclass

from fleet.settings import Settings
from router.policies.accounts import Account
from router.policies.dedup import DedupWindow
from router.policies.overload import LoadTracker

DedupKey = tuple[str | None, str]  # (authenticated tenant, request id); None: the default tenant


class DedupView:
    """(tenant, id) keys forwarded within the window, and those being forwarded by the batch in hand (not yet
    acknowledged). Keyed by tenant too: one tenant's id never makes another tenant's request a duplicate."""

    def __init__(self, window_s: float, max_entries: int) -> None:
        self.window = DedupWindow(window_s, max_entries)
        self._in_batch: set[DedupKey] = set()

    def begin_batch(self) -> None:
        """A new batch: nothing of it is being forwarded yet."""
        self._in_batch = set()

    def seen(self, tenant: str | None, request_id: str, now_ms: int) -> bool:
        key = (tenant, request_id)
        return key in self._in_batch or self.window.seen(key, now_ms / 1000)

    def forwarding(self, tenant: str | None, request_id: str) -> None:
        self._in_batch.add((tenant, request_id))

    def forwarded(self, tenant: str | None, request_id: str, now_ms: int) -> None:
        """Acknowledged by the broker: a redo must not forward it again."""
        self.window.record((tenant, request_id), now_ms / 1000)


@dataclass(slots=True)
class AccountsView:
    """The tenants whose counters this router owns: loaded from their last snapshot when partition 0 of their
    intake topic was assigned here (router/tenant_store.py), dropped when it is revoked."""

    accounts: dict[str, Account]

    def get(self, tenant: str) -> Account | None:
        return self.accounts.get(tenant)


@dataclass(slots=True)
class Views:
    load: LoadTracker
    dedup: DedupView
    accounts: AccountsView

    @classmethod
    def from_settings(cls, settings: Settings) -> Views:
        r = settings.router
        return cls(
            LoadTracker(r.overload_max_backlog), DedupView(r.dedup_window_s, r.dedup_max_entries), AccountsView({})
        )
