"""Idempotent intake: a request id seen within the window is not routed again.

The window lives in the router's memory (an insertion-ordered dict, pruned by
age and size). A router restart starts with an empty window, unless it is
rebuilt from the per-model topics.
"""

from __future__ import annotations

from collections import OrderedDict


class DedupWindow:
    def __init__(self, window_s: float, max_entries: int) -> None:
        self._window_s = window_s
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, request_id: str, now_s: float) -> bool:
        """True if the id was recorded within the window (does not record it)."""
        self._prune(now_s)
        return request_id in self._seen

    def record(self, request_id: str, at_s: float) -> None:
        self._seen[request_id] = at_s
        self._seen.move_to_end(request_id)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def _prune(self, now_s: float) -> None:
        horizon = now_s - self._window_s
        while self._seen:
            _, t = next(iter(self._seen.items()))
            if t >= horizon:
                break
            self._seen.popitem(last=False)
