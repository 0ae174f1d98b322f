from __future__ import annotations

import time

import pytest

from contracts import ChatMessage, Request
from router.complexity.features import FeatureSpec, extract, parts
from router.complexity.model import load_model


@pytest.mark.parametrize(
    "text",
    [
        "7" * 32_000,
        "1 " * 16_000,
        "first " * 6_000,
        ";" + " " * 31_000 + "x",
        "def " * 8_000,
        "\\frac" * 6_000,
        "\n" * 32_000,
        " \n" * 16_000,
        "{" * 32_000,
    ],
)
@pytest.mark.parametrize("signals", [True, False])  # `explain` and training; the router's hot path
def test_adversarial_prompts_classify_in_milliseconds(text: str, signals: bool) -> None:
    model = load_model()
    model.score(Request(id="a", reply_to="b", prompt="warm up"), signals=signals)
    t0 = time.perf_counter()
    model.score(Request(id="a", reply_to="b", prompt=text), signals=signals)
    assert time.perf_counter() - t0 < 0.05


def test_only_the_head_and_tail_windows_are_read_but_length_counts_in_full() -> None:
    spec = FeatureSpec()
    middle = "a " * 5_000 + "zebra " + "b " * 5_000
    f = extract(parts(Request(id="a", reply_to="b", prompt="Prove it.\n\n" + middle + "\n\nThanks")), spec)
    assert "w:zebra" not in f and "p:zebra" not in f  # in the middle: never read
    assert "h:prove" in f and "t:thanks" in f
    assert f["len:gt400"] == 1.0 and f["d:pasted"] == 1.0
    narrow = extract(parts(Request(id="a", reply_to="b", prompt="x " * 3000 + "zebra")), spec, max_chars=100)
    assert "w:zebra" in narrow and "d:log_chars" in narrow


def test_the_last_user_turn_is_classified_and_the_system_prompt_is_context_not_length() -> None:
    system = "You are a helpful HR assistant. " * 100
    req = Request(
        id="a",
        reply_to="b",
        messages=[
            ChatMessage("system", system),
            ChatMessage("user", "Write a compiler for me"),
            ChatMessage("assistant", "Sure"),
            ChatMessage("user", "hi there"),
        ],
    )
    p = parts(req)
    assert p.user == "hi there" and p.turns == 2 and p.system.startswith("You are")
    f = extract(p, FeatureSpec())
    assert "w:compiler" not in f and "s:hr" in f
    assert f["len:le4"] == 1.0  # the user's turn is short, whatever the system prompt's length
    alone = extract(parts(Request(id="a", reply_to="b", prompt="hi there")), FeatureSpec())
    assert f["d:log_chars"] == alone["d:log_chars"]
