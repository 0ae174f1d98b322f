from __future__ import annotations

from worker.engine.simulated import ByteTokenizer
from worker.output import ChunkCoalescer, IncrementalDetokenizer

TOK = ByteTokenizer()


def ids(s: str) -> list[int]:
    return list(s.encode())


def feed(d: IncrementalDetokenizer, text: str) -> str:
    out = ""
    for b in ids(text):
        out += d.push([b])
        if d.stopped:
            break
    return out


def test_stop_string_is_cut_and_never_streamed() -> None:
    d = IncrementalDetokenizer(TOK, ["END"])
    out = feed(d, "abc ENxyz ENDtrailing")
    assert d.stopped and out == "abc ENxyz " and d.text == "abc ENxyz "


def test_held_back_prefix_is_released_at_finish() -> None:
    d = IncrementalDetokenizer(TOK, ["END"])
    out = feed(d, "abcEN")
    assert out == "abc"
    assert d.finish() == "EN" and d.text == "abcEN"


def test_incomplete_utf8_waits_for_its_bytes() -> None:
    d = IncrementalDetokenizer(TOK, [])
    b = "é✓".encode()
    assert d.push([b[0]]) == ""
    assert d.push([b[1]]) == "é"
    assert d.push(list(b[2:])) == "✓"


def test_coalescer_first_token_at_once_then_by_count_or_interval() -> None:
    c = ChunkCoalescer(interval_ms=50, max_tokens=3)
    assert c.add("a", 1, 0.0) == "a"
    assert c.add("b", 1, 0.001) is None
    assert c.add("c", 1, 0.002) is None
    assert c.add("d", 1, 0.003) == "bcd"
    assert c.add("e", 1, 0.004) is None
    assert c.add("f", 1, 0.100) == "ef"
    assert c.drain(0.2) is None
    assert c.add("", 1, 0.3) is None
