from __future__ import annotations

import time

import pytest

from contracts import Request
from router.policies.classify import features


@pytest.mark.parametrize(
    "text",
    ["7" * 32_000, "1 " * 16_000, "first " * 6_000, ";" + " " * 31_000 + "x", "def " * 8_000, "\\frac" * 6_000],
)
def test_adversarial_prompts_classify_in_milliseconds(text: str) -> None:
    t0 = time.perf_counter()
    features(Request(id="a", reply_to="b", prompt=text))
    assert time.perf_counter() - t0 < 0.1


def test_only_a_bounded_prefix_is_read_but_length_counts_in_full() -> None:
    f = features(Request(id="a", reply_to="b", prompt="x" * 10_000 + " 3 + 4"), max_chars=8_000)
    assert not f.math and f.prompt_chars == 10_006
    assert features(Request(id="a", reply_to="b", prompt="what is 3 + 4")).math
