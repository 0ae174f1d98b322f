"""Idempotent intake: a request key seen within the window is not routed again while it runs; once its usage
record says it finished, a re-send is routed (the worker that finished it answers with the same `done`). The
key is (tenant, id): one tenant's id never shadows another's (a request pre-sent under a victim's id would
otherwise have the victim's own request dropped as its duplicate).

The window lives in the router's memory (an insertion-ordered dict, pruned by
age and size). A router restart starts with an empty window, unless it is
rebuilt from the per-model topics.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class DedupWindow:
    def __init__(self, window_s: float, max_entries: int) -> None:
        self._window_s = window_s
        self._max = max_entries
        self._seen: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, key: Hashable, now_s: float) -> bool:
        """True if the key was recorded within the window (does not record it)."""
        self._prune(now_s)
        return key in self._seen

    def record(self, key: Hashable, at_s: float) -> None:
        self._seen[key] = at_s
        self._seen.move_to_end(key)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def forget(self, key: Hashable) -> None:
        """The request finished: a re-send of it is a new request again (its worker answers it from memory)."""
        self._seen.pop(key, None)

    def _prune(self, now_s: float) -> None:
        horizon = now_s - self._window_s
        while self._seen:
            _, t = next(iter(self._seen.items()))
            if t >= horizon:
                break
            self._seen.popitem(last=False)
