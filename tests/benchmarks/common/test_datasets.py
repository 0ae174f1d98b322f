"""Datasets: repeatable random prompts of set lengths; JSONL prompt files."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.common.datasets import load_jsonl, random_requests


class CharTokenizer:
    """One token per character: a tokenizer that counts very differently from words."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)


def test_random_is_repeatable_and_sized() -> None:
    a = random_requests(20, input_len=32, output_len=16, seed=3)
    assert a == random_requests(20, input_len=32, output_len=16, seed=3)
    assert a != random_requests(20, input_len=32, output_len=16, seed=4)
    assert all(r.prompt_len == 32 and r.output_len == 16 for r in a)
    assert len({r.prompt for r in a}) == 20  # unique heads


def test_random_with_tokenizer_is_exact() -> None:
    tok = CharTokenizer()
    reqs = random_requests(5, input_len=100, output_len=8, tokenizer=tok)
    assert all(r.prompt is not None and len(tok.encode(r.prompt)) == 100 == r.prompt_len for r in reqs)


def test_random_range_ratio() -> None:
    reqs = random_requests(200, input_len=100, output_len=50, range_ratio=0.5, seed=1)
    lens = [r.output_len for r in reqs]
    assert min(lens) >= 25 and max(lens) <= 75 and len(set(lens)) > 10


def test_jsonl(tmp_path: Path) -> None:
    p = tmp_path / "prompts.jsonl"
    p.write_text(
        '{"prompt": "hello there world", "max_tokens": 7}\n'
        "\n"
        '{"messages": [{"role": "user", "content": "hi"}], "extra": 1}\n'
    )
    rows = load_jsonl(p, default_output_len=9)
    assert [(r.prompt, r.prompt_len, r.output_len) for r in rows] == [
        ("hello there world", 3, 7),
        (None, 1, 9),
    ]
    assert rows[1].messages == [{"role": "user", "content": "hi"}]
    assert len(load_jsonl(p, 5, output_len=4)) == 5
    assert {r.output_len for r in load_jsonl(p, 5, output_len=4)} == {4}


@pytest.mark.parametrize("body", ['{"max_tokens": 3}\n', "not json\n", ""])
def test_jsonl_rejects_bad_files(tmp_path: Path, body: str) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text(body)
    with pytest.raises(ValueError):
        load_jsonl(p)
