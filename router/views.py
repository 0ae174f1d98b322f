"""State the stages read, kept current from Kafka, in one registry.

A view is an object with a `name` and any of these optional members (the registry looks them up once):

    feed(stop)                 a coroutine that keeps the view current from Kafka (the service starts it as a
                               supervised task: if it dies, the router exits non-zero)
    batch()                    a new intake batch begins
    forwarding(send)           a forward (router/sends.py Send) is about to be sent, not yet acknowledged
    forwarded(send, now_ms)    the broker acknowledged that forward
    finished(usage, now_ms)    a worker's usage record (signed, where records are): a request finished

The built-in views: each model's load (router/feeds.py feed_load), its health (feed_health), the dedup window,
and the accounts of the tenants this router owns (router/accounts/). A new stateful stage registers its view in
build_pipeline: `MyStage(views.register(MyView(settings)))`, one line, and nothing else changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from contracts.messages import UsageRecord
from fleet.settings import Settings
from router.accounts.view import AccountsView
from router.policies.breaker import Breaker, BreakerConfig, BreakerState, Transition
from router.policies.dedup import DedupWindow
from router.policies.fallback import RetryBudget
from router.policies.overload import LoadTracker

if TYPE_CHECKING:
    from router.sends import Send

log = structlog.get_logger(__name__)

OK_FINISHES = frozenset({"stop", "length", "cancelled"})  # usage finishes that say the model served
# DLQ codes of a model topic's records that say the model (its engine or its worker) failed. Everything else a
# client can cause at will and says nothing about the model: `expired` (a short timeout_ms with a large
# max_tokens), `prompt_too_long` (a prompt over the model's context), `invalid_request`, `undecodable`...
MODEL_FAILURE_CODES = frozenset({"poison", "internal"})

DedupKey = tuple[str | None, str]  # (authenticated tenant, request id); None: the default tenant
V = TypeVar("V")


class DedupView:
    """(tenant, id) keys forwarded within the window, and those being forwarded by the batch in hand (not yet
    acknowledged). Keyed by tenant too: one tenant's id never makes another tenant's request a duplicate."""

    name = "dedup"

    def __init__(self, window_s: float, max_entries: int, tenants: bool = False) -> None:
        self.window = DedupWindow(window_s, max_entries)
        self._in_batch: set[DedupKey] = set()
        self._tenants = tenants  # without tenants every request is the default tenant's (None)

    def batch(self) -> None:
        """A new batch: nothing of it is being forwarded yet."""
        self._in_batch = set()

    def seen(self, tenant: str | None, request_id: str, now_ms: int) -> bool:
        key = (tenant, request_id)
        return key in self._in_batch or self.window.seen(key, now_ms / 1000)

    def forwarding(self, send: Send) -> None:
        assert send.request_id is not None, "a forward carries its request's id"
        self._in_batch.add((send.tenant, send.request_id))

    def forwarded(self, send: Send, now_ms: int) -> None:
        """Acknowledged by the broker: a redo must not forward it again."""
        assert send.request_id is not None, "a forward carries its request's id"
        self.window.record((send.tenant, send.request_id), now_ms / 1000)

    def finished(self, usage: UsageRecord, now_ms: int) -> None:
        """Its worker finished it: a re-send is forwarded again, and answered with the same `done` (the worker
        remembers its last answers) instead of dropped until the window ends."""
        self.window.forget((usage.tenant if self._tenants else None, usage.id))


class LoadView(LoadTracker):
    """Each model's backlog and drain rate (router/policies/overload.py), fed from the model topics' offsets."""

    name = "load"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.router.overload_max_backlog)
        self._settings = settings

    def feed(self, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        from router.feeds import feed_load  # the feeds talk to Kafka and read these views

        return feed_load(self._settings, self, stop)

    def forwarding(self, send: Send) -> None:
        if send.model is not None:
            self.routed(send.model)


class HealthView:
    """Each model's health as this router sees it: live workers and capacity (status heartbeats), outcomes over
    a sliding window and the breaker they drive (router/policies/breaker.py), and the fleet's retry budget.

    Outcomes are what the router can read on Kafka, and only those that say something about the model count:
    usage records (`finish` stop, length or cancelled is a success; expired or abandoned is neither: the client
    chose the deadline, and slowness is not failure) and DLQ copies of a model topic's records whose code says
    the model failed (MODEL_FAILURE_CODES). Each outcome carries the tenant of its request, and the breaker
    keeps one tenant's failures from opening it for the others (router/policies/breaker.py). A model whose
    workers stop reporting opens through the live-worker count. Every transition is logged with its reason."""

    name = "health"

    def __init__(self, settings: Settings, now_ms: int) -> None:
        self._settings = settings
        self.on_usage: Callable[[UsageRecord, int], None] = lambda usage, now_ms: None  # every view's `finished`
        r = settings.router
        self.config = BreakerConfig(
            window_ms=int(r.breaker_window_s * 1000),
            error_rate=r.breaker_error_rate,
            min_requests=r.breaker_min_requests,
            no_worker_ms=r.breaker_no_worker_ms,
            cooldown_ms=r.breaker_cooldown_ms,
            probes=r.breaker_probes,
            start_grace_ms=r.breaker_start_grace_ms,
        )
        self.breakers = {m: Breaker(m, self.config, now_ms) for m in settings.model_names}
        self.capacity: dict[str, int] = dict.fromkeys(settings.model_names, 0)
        self.budget = RetryBudget(r.retry_budget_per_s, r.retry_budget_burst)
        self.transitions: list[Transition] = []  # the last few, newest last

    def feed(self, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        from router.feeds import feed_health  # the feeds talk to Kafka and read these views

        return feed_health(self._settings, self, stop)

    def state(self, model: str) -> BreakerState:
        b = self.breakers.get(model)
        return b.state if b is not None else BreakerState.CLOSED

    def admit(self, model: str, now_ms: int) -> bool:
        b = self.breakers.get(model)
        return b is None or b.admit(now_ms)

    def workers(self, model: str, live: int, capacity: int, now_ms: int) -> None:
        b = self.breakers.get(model)
        if b is not None:
            self.capacity[model] = capacity
            self._note(b.workers(live, now_ms))

    def blind(self, now_ms: int) -> None:
        """The feed could not see the fleet (the broker did not answer, or this process stalled): silence opens
        no breaker until the start grace has passed (heartbeats written meanwhile are read by then)."""
        for b in self.breakers.values():
            b.blind(now_ms)

    def usage(self, model: str, finish: str, tenant: str, now_ms: int) -> None:
        b = self.breakers.get(model)
        if b is not None and finish in OK_FINISHES:
            self._note(b.outcome(False, now_ms, f"usage {finish}", tenant))

    def dead_letter(self, model: str, code: str, tenant: str, now_ms: int) -> None:
        b = self.breakers.get(model)
        if b is not None and code in MODEL_FAILURE_CODES:
            self._note(b.outcome(True, now_ms, f"dlq {code}", tenant))

    def tick(self, now_ms: int) -> None:
        """Time passes: cool-downs and worker expiries take effect."""
        for b in self.breakers.values():
            self._note(b.tick(now_ms))

    def summary(self, now_ms: int) -> dict[str, str]:
        """model -> "<state> <live>w <failures>/<outcomes>" for status lines and the health file."""
        out = {}
        for m, b in self.breakers.items():
            f, n = b.error_rate(now_ms)
            out[m] = f"{b.state.value} {b.live_workers}w {f}/{n}"
        return out

    def _note(self, t: Transition | None) -> None:
        if t is None:
            return
        self.transitions = [*self.transitions[-31:], t]
        log.warning("router.breaker", model=t.model, old=t.old.value, new=t.new.value, reason=t.reason)


class Views:
    """The registry: the built-in views by name, any registered view's feed and hooks."""

    def __init__(self, settings: Settings, now_ms: int = 0) -> None:
        r = settings.router
        self.all: list[Any] = []
        self.feeds: dict[str, Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = {}
        self._batch: list[Callable[[], None]] = []
        self._forwarding: list[Callable[[Send], None]] = []
        self._forwarded: list[Callable[[Send, int], None]] = []
        self._finished: list[Callable[[UsageRecord, int], None]] = []
        self.load = self.register(LoadView(settings))
        self.dedup = self.register(DedupView(r.dedup_window_s, r.dedup_max_entries, bool(settings.tenants)))
        self.accounts = self.register(AccountsView(settings))
        self.health = self.register(HealthView(settings, now_ms))
        self.health.on_usage = self.finished  # the health feed reads the usage topic for every view

    @classmethod
    def from_settings(cls, settings: Settings, now_ms: int = 0) -> Views:
        return cls(settings, now_ms)

    def register(self, view: V) -> V:
        """Add a view: its feed is started with the router, its hooks called by the loop. Returns it."""
        name = getattr(view, "name", None)
        if not isinstance(name, str) or any(getattr(v, "name", None) == name for v in self.all):
            raise ValueError(f"a view needs a unique `name`: {name!r}")
        self.all.append(view)
        if callable(feed := getattr(view, "feed", None)):
            self.feeds[name] = feed
        if callable(hook := getattr(view, "batch", None)):
            self._batch.append(hook)
        if callable(hook := getattr(view, "forwarding", None)):
            self._forwarding.append(hook)
        if callable(hook := getattr(view, "forwarded", None)):
            self._forwarded.append(hook)
        if callable(hook := getattr(view, "finished", None)):
            self._finished.append(hook)
        return view

    def batch(self) -> None:
        for hook in self._batch:
            hook()

    def forwarding(self, send: Send) -> None:
        for hook in self._forwarding:
            hook(send)

    def forwarded(self, send: Send, now_ms: int) -> None:
        for hook in self._forwarded:
            hook(send, now_ms)

    def finished(self, usage: UsageRecord, now_ms: int) -> None:
        for hook in self._finished:
            hook(usage, now_ms)
