"""What the traffic cost with routing, against what it would have cost with every request on one reference model
(by default the strongest tier's), from the `llm.usage` records (`fleet router cost`).

The reference cost prices each run's own token counts at the reference model's prices: exact when the tiers share
a tokenizer (the default tiers are one model at two precisions), an estimate otherwise, and it says nothing about
answer quality. Each generation run counts once (records are deduplicated by `run_id`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from contracts.codec import Codec
from contracts.messages import UsageRecord
from fleet.kafka import read_to_end
from fleet.settings import ModelSettings, Settings


@dataclass(frozen=True, slots=True)
class ModelLine:
    model: str
    runs: int
    prompt_tokens: int
    completion_tokens: int
    cost: float


@dataclass(frozen=True, slots=True)
class CostReport:
    reference_model: str
    runs: int  # distinct generation runs
    duplicates: int  # records of a run already counted
    routed_cost: float  # what the fleet recorded
    reference_cost: float  # the same tokens at the reference model's prices
    by_model: list[ModelLine] = field(default_factory=list)
    by_tier: dict[str, int] = field(default_factory=dict)  # runs per tier "auto" chose ("-": a named model)

    @property
    def saving(self) -> float:
        """The share of the reference cost that routing saved (negative: it cost more)."""
        return 1.0 - self.routed_cost / self.reference_cost if self.reference_cost > 0 else 0.0

    def text(self) -> str:
        lines = [f"{'model':<16}{'runs':>8}{'prompt tok':>12}{'compl. tok':>12}{'cost':>14}"]
        for m in self.by_model:
            lines.append(f"{m.model:<16}{m.runs:>8}{m.prompt_tokens:>12}{m.completion_tokens:>12}{m.cost:>14.6f}")
        tiers = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_tier.items()))
        lines += [
            f"runs: {self.runs} (duplicate records skipped: {self.duplicates}); by tier: {tiers or '-'}",
            f"cost with routing:            {self.routed_cost:.6f}",
            f"cost all on {self.reference_model!r}:{' ' * max(1, 17 - len(self.reference_model))}"
            f"{self.reference_cost:.6f}",
            f"saved: {self.saving:.1%} (same token counts priced at {self.reference_model!r}'s prices)",
        ]
        return "\n".join(lines)


def cost_report(records: Iterable[UsageRecord], reference: ModelSettings) -> CostReport:
    """Pure: the report over `records` (any order, duplicates allowed)."""
    seen: set[tuple[str, str, str]] = set()
    dups = 0
    per: dict[str, list[float]] = {}
    tiers: dict[str, int] = {}
    routed = ref = 0.0
    for r in records:
        key = (r.id, r.run_id, "") if r.run_id else (r.id, r.model, str(r.ts_ms))
        if key in seen:
            dups += 1
            continue
        seen.add(key)
        line = per.setdefault(r.model, [0, 0, 0, 0.0])
        line[0] += 1
        line[1] += r.prompt_tokens
        line[2] += r.completion_tokens
        line[3] += r.cost
        routed += r.cost
        ref += r.prompt_tokens * reference.price_per_1k_prompt / 1000
        ref += r.completion_tokens * reference.price_per_1k_completion / 1000
        tiers[r.tier or "-"] = tiers.get(r.tier or "-", 0) + 1
    by_model = [ModelLine(m, int(v[0]), int(v[1]), int(v[2]), round(v[3], 8)) for m, v in sorted(per.items())]
    return CostReport(reference.name, len(seen), dups, round(routed, 8), round(ref, 8), by_model, tiers)


def reference_model(settings: Settings, name: str | None = None) -> ModelSettings:
    """`name`, or the model of the last (strongest) tier. Raises KeyError naming the configured models."""
    return settings.model(name or settings.router.tiers[-1].model)


async def read_usage(settings: Settings, timeout_s: float = 30.0) -> list[UsageRecord]:
    """Every usage record on the topic now (from the start of each partition up to its end when read); records
    that do not decode as usage are skipped."""
    codec = Codec()
    out: list[UsageRecord] = []
    for rec in await read_to_end(settings, [settings.kafka.topics.usage], timeout_s):
        try:
            out.append(codec.decode_usage(rec.value or b""))
        except Exception:  # not a usage record: not ours to count
            continue
    return out


def report_from_topic(settings: Settings, reference: str | None = None, timeout_s: float = 30.0) -> CostReport:
    ref = reference_model(settings, reference)
    return cost_report(asyncio.run(read_usage(settings, timeout_s)), ref)
