"""Out-of-order completion, in-order commits.

Requests of one partition finish in any order; the committable offset is the
lowest offset still unfinished (or one past the highest taken when all are
done). Pure: no Kafka.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


class _Partition:
    __slots__ = ("committed", "handed", "high", "pending")

    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.high: int | None = None  # one past the highest offset taken
        self.committed: int | None = None  # last offset the broker confirmed
        self.handed: int | None = None  # last offset handed out for commit (confirmed or not yet)

    def committable(self) -> int | None:
        if self.pending:
            return min(self.pending)
        return self.high


class OffsetTracker(Generic[P]):
    def __init__(self) -> None:
        self._parts: dict[P, _Partition] = {}

    def take(self, partition: P, offset: int) -> None:
        p = self._parts.setdefault(partition, _Partition())
        p.pending.add(offset)
        p.high = max(p.high or 0, offset + 1)

    def finish(self, partition: P, offset: int) -> None:
        p = self._parts.get(partition)
        if p is not None:
            p.pending.discard(offset)

    def unfinished(self, partition: P | None = None) -> int:
        if partition is not None:
            p = self._parts.get(partition)
            return len(p.pending) if p else 0
        return sum(len(p.pending) for p in self._parts.values())

    def to_commit(self) -> dict[P, int]:
        """Offsets to commit now (only those that moved); marks them as handed out. They count as
        committed only after `confirmed`; after `failed` they are handed out again."""
        out: dict[P, int] = {}
        for key, p in self._parts.items():
            c = p.committable()
            if c is not None and c != p.handed:
                out[key] = c
                p.handed = c
        return out

    def confirmed(self, offsets: dict[P, int]) -> None:
        """The broker acknowledged the commit of `offsets`."""
        for key, o in offsets.items():
            p = self._parts.get(key)
            if p is not None:
                p.committed = o if p.committed is None else max(p.committed, o)

    def failed(self, offsets: dict[P, int]) -> None:
        """The commit of `offsets` failed: the next `to_commit` hands them out again."""
        for key in offsets:
            p = self._parts.get(key)
            if p is not None:
                p.handed = p.committed

    def committed(self, partition: P) -> int | None:
        """The last offset the broker confirmed for `partition` (None: nothing yet)."""
        p = self._parts.get(partition)
        return p.committed if p else None

    def uncommitted_partitions(self) -> list[P]:
        """Partitions whose committable offset the broker has not confirmed yet."""
        return [k for k, p in self._parts.items() if p.committable() is not None and p.committable() != p.committed]

    def committable(self, partition: P) -> int | None:
        p = self._parts.get(partition)
        return p.committable() if p else None

    def forget(self, partition: P) -> None:
        """Drop a revoked partition: its unfinished offsets are abandoned for the new owner."""
        self._parts.pop(partition, None)

    def partitions(self) -> list[P]:
        return list(self._parts)
