"""The fuzz corpus of tests/test_fuzz.py through the router's decision alone (fast, no Kafka):
every case is refused with its documented code, to the DLQ, answered where an address survives."""

from __future__ import annotations

import random

import msgspec

from contracts import Codec, Limits
from fleet.settings import Settings
from router.decide import Decider, Reject
from tests.test_fuzz import cases


def test_every_fuzz_case_gets_its_documented_refusal() -> None:
    s = msgspec.structs.replace(Settings(), limits=Limits(max_prompt_chars=2000, max_tokens_ceiling=4000))
    d = Decider(s, Codec())
    all_cases = cases("replies", random.Random(1234))
    assert len(all_cases) >= 200
    for name, body, ct, code, rid in all_cases:
        out = d.decide(body, [("content-type", ct)] if ct is not None else [], 0, 0)
        assert isinstance(out, Reject), name
        assert out.code is code and out.to_dlq, (name, out.code, out.message)
        if rid is not None:
            assert out.request_id == rid and out.reply_to == "replies", name
