"""Where each intake record of a partition stands, and how far the partition may be committed. Pure: no Kafka.

A record fetched by the router reaches one outcome (forwarded, refused, answered, moved, a duplicate, held for
its tenant's rate). Until the partition is committed past it, the ledger remembers what happened to it, so a
redo (a batch sought back after a retriable send failure) neither decides it again nor writes any part of its
outcome twice:

    completed    offsets that reached their outcome (a redo skips them)
    unfinished   offsets decided whose sends were partly acknowledged: the decision and the sends still missing
    held         paced batch requests (router/pacer.py releases them): the commit stops before the first
    attempts     how often a record's error reply failed while the broker answered (bounded by the caller)

Shaped like the worker's offset tracker (worker/offsets.py): records finish in any order; the commit point is
where the caller asks, or before the first held record.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

P = TypeVar("P", bound=Hashable)


@dataclass(slots=True)
class Unfinished:
    decision: Any  # the pipeline's outcome (router/stages/base.py), kept as decided
    missing: list[Any]  # its sends (router/sends.py Send) not yet acknowledged


@dataclass(slots=True)
class PartitionLedger:
    completed: set[int] = field(default_factory=set)
    unfinished: dict[int, Unfinished] = field(default_factory=dict)
    held: dict[int, Any] = field(default_factory=dict)  # offset -> its record, until the pacer releases it
    attempts: dict[int, int] = field(default_factory=dict)
    fetched_end: int = 0  # past the last record fetched
    skipped_to: int = 0  # past the last undecodable batch stepped over since the last look (0: none)

    def fetched(self, end: int) -> None:
        self.fetched_end = end

    def is_settled(self, offset: int) -> bool:
        """Reached its outcome already, or waits in the pacer: a redo sends nothing for it."""
        return offset in self.completed or offset in self.held

    def reached(self, offset: int) -> None:
        self.completed.add(offset)
        self.unfinished.pop(offset, None)

    def partly(self, offset: int, decision: Any, missing: list[Any]) -> None:
        self.unfinished[offset] = Unfinished(decision, missing)

    def hold(self, offset: int, record: Any) -> None:
        self.held[offset] = record

    def release(self, offset: int) -> None:
        self.held.pop(offset, None)

    def attempt(self, offset: int) -> int:
        """One more failed attempt at this record's error reply; returns how many so far."""
        n = self.attempts.get(offset, 0) + 1
        self.attempts[offset] = n
        return n

    def commit_point(self, offset: int) -> int:
        """Where the partition may be committed to: `offset`, or before its first held record."""
        return min(offset, min(self.held)) if self.held else offset

    def committed(self, offset: int) -> int:
        """The broker acknowledged a commit at `offset`: forget what lies before it. Returns how many completed
        records the commit covered."""
        below = [o for o in self.completed if o < offset]
        self.completed.difference_update(below)
        for o in [o for o in self.attempts if o < offset]:
            del self.attempts[o]
        for o in [o for o in self.unfinished if o < offset]:
            del self.unfinished[o]
        return len(below)


class Ledger(Generic[P]):
    """The ledgers of the partitions this router holds; a partition that leaves is forgotten (its new owner
    starts from the committed offset)."""

    def __init__(self) -> None:
        self.parts: dict[P, PartitionLedger] = {}

    def __call__(self, partition: P) -> PartitionLedger:
        p = self.parts.get(partition)
        if p is None:
            p = self.parts[partition] = PartitionLedger()
        return p

    def get(self, partition: P) -> PartitionLedger | None:
        return self.parts.get(partition)

    def forget(self, partition: P) -> None:
        self.parts.pop(partition, None)

    def held(self, partition: P) -> dict[int, Any]:
        p = self.parts.get(partition)
        return p.held if p is not None else {}

    @property
    def holding(self) -> bool:
        return any(p.held for p in self.parts.values())
