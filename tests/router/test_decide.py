from __future__ import annotations

import json
import re

from contracts import Codec, ContentType, ErrorCode, Request
from fleet.settings import Settings
from router.decide import Decider, Forward, Reject
from router.policies.classify import Classifier, Tier, choose_tier
from router.policies.dedup import DedupWindow

S = Settings()
D = Decider(S, Codec())
JSON = [("content-type", b"application/json")]


def decide(obj: object, headers: list[tuple[str, bytes]] = JSON, ts: int = 1000, now: int = 1000) -> object:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return D.decide(raw, headers, ts, now)


def test_auto_routes_simple_and_complex_prompts_to_different_tiers() -> None:
    simple = decide({"id": "a", "reply_to": "r", "prompt": "Say hi.", "max_tokens": 16})
    hard = decide(
        {
            "id": "b",
            "reply_to": "r",
            "max_tokens": 512,
            "prompt": "Explain step by step why this is O(n log n) and prove it:\n```python\ndef sort(xs):\n"
            "    return sorted(xs)\n```\nCompare the trade-offs with 3 * 4 + 2 alternatives.",
        }
    )
    assert isinstance(simple, Forward) and isinstance(hard, Forward)
    assert simple.model == "small" and hard.model == "large"
    assert simple.tier == "simple" and hard.tier == "complex"


def test_named_model_passes_through_and_deadline_becomes_absolute() -> None:
    d = decide({"id": "a", "reply_to": "r", "prompt": "x", "model": "large", "timeout_ms": 500}, ts=10_000, now=10_001)
    assert isinstance(d, Forward) and d.model == "large"
    assert d.request.deadline_ms == 10_500 and d.request.timeout_ms is None


def test_unknown_model() -> None:
    d = decide({"id": "a", "reply_to": "r", "prompt": "x", "model": "gpt-9"})
    assert isinstance(d, Reject) and d.code is ErrorCode.UNKNOWN_MODEL and d.to_dlq and d.reply_to == "r"


def test_expired_is_refused_without_dlq() -> None:
    d = decide({"id": "a", "reply_to": "r", "prompt": "x", "timeout_ms": 5}, ts=1000, now=2000)
    assert isinstance(d, Reject) and d.code is ErrorCode.EXPIRED and not d.to_dlq


def test_bad_bytes_go_to_dlq_with_no_address() -> None:
    d = decide(b"\xff\xfe garbage")
    assert isinstance(d, Reject) and d.code is ErrorCode.INVALID_ENCODING and d.to_dlq and d.reply_to is None


def test_msgpack_body_labelled_json_is_answered_in_msgpack() -> None:
    raw = Codec().encode(Request(id="m", reply_to="r", prompt="x"), ContentType.MSGPACK)
    d = decide(raw)
    assert isinstance(d, Reject) and d.code is ErrorCode.INVALID_ENCODING
    assert d.request_id == "m" and d.content_type == "application/msgpack"


def test_auto_explains_its_choice_and_a_long_system_prompt_does_not_make_hi_there_complex() -> None:
    # issue 14's example: the regex score sent this to `large` (system prompt length + max_tokens). (Its other
    # example, "Prove there are infinitely many primes.", is in the held-out split and still goes to `simple`: a
    # known miss of the lexical model, counted in the held-out numbers, docs/routing.md.)
    task = "Implement a thread-safe LRU cache in Go with per-entry TTL and explain the locking trade-offs."
    hard = decide({"id": "p", "reply_to": "r", "prompt": task})
    system = "You are the HR assistant of a large company. " + "Answer questions about leave and pay. " * 60
    hi = decide(
        {
            "id": "h",
            "reply_to": "r",
            "max_tokens": 1024,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": "hi there"}],
        }
    )
    assert isinstance(hard, Forward) and isinstance(hi, Forward)
    assert (hard.tier, hi.tier) == ("complex", "simple"), (hard.score, hi.score)
    assert hard.signals == ()  # computed only when router.forward is logged (debug)
    debug = Decider(Settings(log_level="debug"), Codec())
    explained = debug.decide(json.dumps({"id": "p", "reply_to": "r", "prompt": task}).encode(), JSON, 1000, 1000)
    assert isinstance(explained, Forward) and explained.score == hard.score and len(explained.signals) == 4
    assert all(re.fullmatch(r".+[+-]\d+\.\d\d", s) for s in explained.signals), explained.signals
    named = decide({"id": "n", "reply_to": "r", "prompt": "x", "model": "large"})
    assert isinstance(named, Forward) and named.score is None and named.signals == ()


def test_choose_tier_takes_the_first_tier_that_covers_the_score() -> None:
    tiers = Classifier(S.router.tiers, S.model_names).tiers
    assert [t.name for t in tiers] == ["simple", "complex"] and 0 < tiers[0].max_score < 1
    assert choose_tier(0.0, tiers).name == "simple"
    assert choose_tier(0.99, tiers).name == "complex"
    assert choose_tier(2.0, [Tier("a", "small", 0.5)]).name == "a"  # the last tier takes everything


def test_dedup_window_expires_and_bounds_size() -> None:
    w = DedupWindow(window_s=10, max_entries=2)
    w.record("a", 0)
    assert w.seen("a", 5) and not w.seen("b", 5)
    assert not w.seen("a", 11)
    w.record("x", 20)
    w.record("y", 20)
    w.record("z", 20)
    assert len(w) == 2 and not w.seen("x", 20)
