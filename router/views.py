"""State the stages read, fed by the Kafka loop and its tasks and handed to the stages (which only read it):
the dedup window with the ids this batch already forwards, and each model's load (router/feeds.py keeps it
current from the model topics' offsets and the status topic)."""

from __future__ import annotations

from dataclasses import dataclass

from fleet.settings import Settings
from router.policies.dedup import DedupWindow
from router.policies.overload import LoadTracker


class DedupView:
    """Ids forwarded within the window, and those being forwarded by the batch in hand (not yet acknowledged)."""

    def __init__(self, window_s: float, max_entries: int) -> None:
        self.window = DedupWindow(window_s, max_entries)
        self._in_batch: set[str] = set()

    def begin_batch(self) -> None:
        """A new batch: nothing of it is being forwarded yet."""
        self._in_batch = set()

    def seen(self, request_id: str, now_ms: int) -> bool:
        return request_id in self._in_batch or self.window.seen(request_id, now_ms / 1000)

    def forwarding(self, request_id: str) -> None:
        self._in_batch.add(request_id)

    def forwarded(self, request_id: str, now_ms: int) -> None:
        """Acknowledged by the broker: a redo must not forward it again."""
        self.window.record(request_id, now_ms / 1000)


@dataclass(slots=True)
class Views:
    load: LoadTracker
    dedup: DedupView

    @classmethod
    def from_settings(cls, settings: Settings) -> Views:
        r = settings.router
        return cls(LoadTracker(r.overload_max_backlog), DedupView(r.dedup_window_s, r.dedup_max_entries))
