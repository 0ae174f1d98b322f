"""Complexity routing for `model: "auto"`: the learned classifier's score (router/complexity: a logistic model on
word features of the last user turn and one weight per WordPiece token distilled from a sentence embedder, trained
on a labelled set of gateway prompts) mapped to the first
configured tier whose threshold covers it.

Tiers are resolved once at start-up against the classifier artifact: a tier's threshold is its `max_score`, or
the score that sends its `cheap_share` of the reference traffic to it and the tiers before it, or (first tier,
neither set) the artifact's own threshold. Anything that cannot work is a ClassifierError naming the tier.

Pure: no Kafka, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from contracts.messages import Request
from fleet.settings import TierSettings
from router.complexity.model import ClassifierError, ComplexityModel, load_model

__all__ = ["Classifier", "ClassifierError", "Decision", "Tier", "choose_tier", "resolve_tiers"]


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    model: str
    max_score: float  # the tier takes scores <= this (the last tier takes everything)


class Decision(msgspec.Struct, frozen=True):  # one per "auto" request: a struct is cheap to build
    score: float
    tier: Tier
    signals: tuple[str, ...]


def resolve_tiers(tiers: Sequence[TierSettings], models: Sequence[str], model: ComplexityModel) -> list[Tier]:
    """Each configured tier with its threshold. Raises ClassifierError on an empty list, a duplicate name, a model
    that is not configured, both or neither of max_score/cheap_share where one is needed, a threshold outside
    [0, 1], or thresholds that do not increase."""
    if not tiers:
        raise ClassifierError("router.tiers is empty: configure at least one tier")
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise ClassifierError(f"router.tiers: tier names must be unique, got {names}")
    out: list[Tier] = []
    for i, t in enumerate(tiers):
        last = i == len(tiers) - 1
        where = f"router.tiers[{i}] ({t.name!r})"
        if t.model not in models:
            raise ClassifierError(f"{where}: model {t.model!r} is not configured; models: {sorted(models)}")
        if t.max_score is not None and t.cheap_share is not None:
            raise ClassifierError(f"{where}: set max_score or cheap_share, not both")
        if t.max_score is not None:
            infinite_last = last and t.max_score == math.inf
            if math.isnan(t.max_score) or t.max_score < 0 or (t.max_score > 1 and not infinite_last):
                raise ClassifierError(f"{where}: max_score {t.max_score} must be in [0, 1] (the last tier: or inf)")
            threshold = t.max_score
        elif t.cheap_share is not None:
            if not 0.0 < t.cheap_share < 1.0:
                raise ClassifierError(f"{where}: cheap_share {t.cheap_share} must be between 0 and 1 (exclusive)")
            threshold = model.threshold_for_share(t.cheap_share)
        elif last:
            threshold = math.inf
        elif i == 0:
            threshold = model.threshold
        else:
            raise ClassifierError(f"{where}: a middle tier needs max_score or cheap_share")
        if out and threshold <= out[-1].max_score:
            raise ClassifierError(
                f"{where}: threshold {threshold} must be above the previous tier's ({out[-1].max_score}): tiers go "
                "from cheapest to strongest"
            )
        out.append(Tier(t.name, t.model, threshold))
    return out


def choose_tier(score: float, tiers: Sequence[Tier]) -> Tier:
    """The first tier (in configured order) whose max_score is >= score; the last tier otherwise."""
    for tier in tiers:
        if score <= tier.max_score:
            return tier
    return tiers[-1]


class Classifier:
    """The model and the resolved tiers, built once at start-up (raises ClassifierError)."""

    def __init__(
        self,
        tiers: Sequence[TierSettings],
        models: Sequence[str],
        path: str | None = None,
        max_chars: int = 8_000,
        *,
        signals: bool = True,  # compute the top signals (the router: only when its debug log shows them)
    ) -> None:
        self.model = load_model(path)
        self.tiers = resolve_tiers(tiers, models, self.model)
        self._max_chars = max_chars
        self._signals = signals

    def decide(self, req: Request, tiers: Sequence[Tier] | None = None) -> Decision:
        """The score, the tier among `tiers` (default: all), and the signals behind the score."""
        if self._signals:
            s = self.model.score(req, self._max_chars)
            score, signals = s.score, s.signals
        else:  # the router's hot path: no names, no signals
            score, signals = self.model.fast_score(req, self._max_chars), ()
        return Decision(score, choose_tier(score, tiers or self.tiers), signals)
