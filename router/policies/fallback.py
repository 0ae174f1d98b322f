"""Fallback chains and the retry budget, on plain data.

A chain names, for a model or a tier, the alternatives to try in order when its breaker is open; each
alternative's own chain follows it (large -> medium -> small when medium's chain is [small]). Names are models
or tiers (a tier stands for its model). Checked when the router starts: an unknown name or a cycle (a model
reachable from itself) raises, naming it. The retry budget is a token bucket: reroutes past it are not made,
so a dead model's traffic cannot storm the rest of the fleet faster than the configured rate. The time comes in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class ChainError(ValueError):
    pass


class Chains:
    """The effective chain of each model and tier: alternatives as model names, in order, without repeats."""

    def __init__(self, chains: Mapping[str, Sequence[str]], models: Sequence[str], tiers: Mapping[str, str]) -> None:
        known = set(models)
        for key, alts in chains.items():
            if key not in known and key not in tiers:
                raise ChainError(f"router.fallback: {key!r} is not a configured model or tier")
            for a in alts:
                if a not in known and a not in tiers:
                    raise ChainError(f"router.fallback[{key!r}]: {a!r} is not a configured model or tier")
        self._tiers = dict(tiers)
        self._raw = {k: [self._model(a) for a in v] for k, v in chains.items()}
        self._chains = {k: self._expand(k) for k in chains}

    def _model(self, name: str) -> str:
        return self._tiers.get(name, name)

    def _expand(self, key: str) -> tuple[str, ...]:
        """Depth first through each alternative's own chain; a name met again on the current path is a cycle."""
        out: list[str] = []

        def walk(name: str, path: tuple[str, ...]) -> None:
            for alt in self._raw.get(name, []):
                if alt in path:
                    cycle = " -> ".join((*path, alt))
                    raise ChainError(f"router.fallback: cycle {cycle}")
                if alt not in out:
                    out.append(alt)
                walk(alt, (*path, alt))

        start = self._model(key)
        walk(key, (start,) if key == start else (key, start))
        if start != key:  # a tier's chain, then its model's own
            walk(start, (start,))
        return tuple(a for a in out if a != start)

    def chain(self, model: str, tier: str | None) -> tuple[str, ...]:
        """The alternatives of a request routed to `model` (through `tier`, if any): the tier's chain first."""
        if tier is not None and tier in self._chains:
            return self._chains[tier]
        return self._chains.get(model, ())


class RetryBudget:
    """A token bucket of reroutes: `per_s` a second, at most `burst` at once."""

    def __init__(self, per_s: float, burst: int) -> None:
        self.per_s, self.burst = per_s, burst
        self._tokens = float(burst)
        self._at_ms: int | None = None
        self.spent = 0
        self.refused = 0

    def _refill(self, now_ms: int) -> None:
        if self._at_ms is not None and now_ms > self._at_ms:
            self._tokens = min(float(self.burst), self._tokens + (now_ms - self._at_ms) / 1000 * self.per_s)
        if self._at_ms is None or now_ms > self._at_ms:
            self._at_ms = now_ms

    def available(self, now_ms: int) -> bool:
        self._refill(now_ms)
        return self._tokens >= 1.0

    def take(self, now_ms: int) -> bool:
        if not self.available(now_ms):
            self.refused += 1
            return False
        self._tokens -= 1.0
        self.spent += 1
        return True
