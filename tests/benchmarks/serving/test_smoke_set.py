"""The smoke set's report: every answer shown on one table row, failures named."""

from __future__ import annotations

from benchmarks.serving.smoke_set import SMOKE_SET, SmokeResult, markdown

META = {"machine_detail": "test box", "commit": "abc", "date": "2026-01-01", "max_tokens": "64"}


def test_rows_escape_pipes_and_newlines_and_name_failed_checks() -> None:
    ok = SmokeResult("large", "Q?", "a | b\nc", "stop", 3, {"answer": True}, reference="a | b\nc")
    bad = SmokeResult("small", "Q2?", "x", "length", 64, {"answer": False, "finish reason": True})
    text = markdown([ok, bad], meta=META)
    rows = [ln for ln in text.splitlines() if ln.startswith("| large") or ln.startswith("| small")]
    assert rows[0] == "| large | Q? | a \\| b⏎ c | 3 | all passed (= transformers) |"
    assert rows[1].endswith("| FAILED: answer |")
    assert "1/2 passed every check" in text


def test_every_prompt_says_what_it_checks() -> None:
    assert len({p.question for p in SMOKE_SET}) == len(SMOKE_SET)
    assert all(p.expect and p.why for p in SMOKE_SET)
    assert any(any(ord(ch) > 127 for ch in "".join(p.expect)) for p in SMOKE_SET), "a multi-byte answer"
