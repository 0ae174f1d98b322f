"""A first complexity classifier: cheap features of the request mapped to a
score in [0, 1], then to the first configured tier whose `max_score` covers it.

Pure: no Kafka, no model. The weights are a starting point, meant to be tuned
against real traffic; every decision logs its features.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from contracts.messages import Request
from fleet.settings import TierSettings

# Every pattern is linear on any input: no unbounded quantifier is followed by anything that can fail and
# make it give characters back, repeats are bounded, and the number pattern cannot start inside a number
# (the old `\d+\s*[-+*/^]\s*\d+` took 28 s on 32,000 digits). The text is also cut to a bounded prefix
# first (`classify_max_chars`), so the cost of a request is bounded whatever its prompt.
_CODE = re.compile(
    r"```|\bdef\s{1,8}\w{1,64}\(|\bclass\s{1,8}\w|\bimport\s{1,8}\w|\breturn\b|[{};][ \t]{0,16}$|=>|\bfunction\b"
    r"|#include|\bSELECT\b",
    re.MULTILINE,
)
_MATH = re.compile(
    r"\\(frac|int|sum|sqrt)|(?<!\d)\d{1,32}[ \t]{0,8}[-+*/^][ \t]{0,8}\d"
    r"|\b(prove|integral|derivative|equation|theorem|matrix|probability)\b",
    re.IGNORECASE,
)
_REASONING = re.compile(
    r"\b(step by step|explain why|reason|compare|analy[sz]e|trade-?offs?|first,? [^\n]{0,200}? then|design|plan"
    r"|evaluate)\b",
    re.IGNORECASE,
)

DEFAULT_MAX_CHARS = 8_000


@dataclass(frozen=True, slots=True)
class Features:
    prompt_chars: int
    max_tokens: int
    code: bool
    math: bool
    reasoning: bool

    @property
    def score(self) -> float:
        length = min(1.0, self.prompt_chars / 4000)  # long prompts need more capacity
        output = min(1.0, self.max_tokens / 1024)  # long answers are harder to keep coherent
        s = 0.2 * length + 0.15 * output + 0.3 * self.code + 0.3 * self.math + 0.35 * self.reasoning
        return round(min(1.0, s), 4)


def request_text(req: Request) -> str:
    if req.prompt is not None:
        return req.prompt
    return "\n".join(m.content for m in req.messages or ())


def features(req: Request, max_chars: int = DEFAULT_MAX_CHARS) -> Features:
    """Features of the request; the patterns see only the first `max_chars` characters of its text."""
    text = request_text(req)
    head = text[:max_chars]
    return Features(
        prompt_chars=len(text),
        max_tokens=req.max_tokens,
        code=bool(_CODE.search(head)),
        math=bool(_MATH.search(head)),
        reasoning=bool(_REASONING.search(head)),
    )


def choose_tier(score: float, tiers: list[TierSettings]) -> TierSettings:
    """The first tier (in configured order) whose max_score is >= score; the last tier otherwise."""
    for tier in tiers:
        if score <= tier.max_score:
            return tier
    return tiers[-1]
