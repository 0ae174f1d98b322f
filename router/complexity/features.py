"""Features of a request for the complexity classifier, by name: what training, `fleet router explain` and the
held-out numbers read. The router computes the same weighted sum without the names (fast.py, one pass);
tests/router/test_complexity.py checks the two agree on every request of the labelled set, so a change here that
fast.py does not follow fails there.

What the user asked decides: word unigrams and bigrams of the last user turn (or `prompt`), plus the words that
open and close it (an instruction sits before or after pasted text: "What's the date in this email? <email>").
The system prompt is context only: its words under their own prefix, never its length. `max_tokens` is one
dense feature (log scale), deliberately weak. The instruction's WordPiece tokens are the last input: the model
adds the mean of one learned weight per token (model.py; distilled from a sentence embedder). Long turns are read
as a head and a tail window, so the cost of a request is bounded whatever its size; length itself counts in full
(a dense, bucketed feature).

Pure and stdlib-only: no numpy on the hot path (a dict lookup per feature beats array indexing for ~300 names).
"""

from __future__ import annotations

import bisect
import itertools
import math
import re

import msgspec

from contracts.messages import Request

SPEC_VERSION = 2  # 2: the instruction's token ids are read too (up to embed_tokens of them)

# words: runs of letters/digits (any script); numbers collapse to one token so "what is 17% of 80" generalises
_WORD = re.compile(r"\w+", re.UNICODE)
# code-looking lines: braces/semicolons at the end, defs, keywords, fences, arrows. Repeats are bounded and never
# cross a line, so the pattern is linear on any input (the text is also windowed before it runs)
_CODE_LINE = re.compile(
    r"[{};][ \t]{0,16}$|^[ \t]{0,32}(def|class|import|from|return|if|for|while|func|function|const|let|var|public"
    r"|private|SELECT|FROM|WHERE|#include|package)\b|^[ \t]{0,32}```|=>|:=|==",
    re.MULTILINE,
)


class FeatureSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How text becomes features; stored in the artifact so that the router reads requests exactly as training
    did."""

    version: int = SPEC_VERSION
    head_chars: int = 2_000  # a long turn is read as its first head_chars ...
    tail_chars: int = 2_000  # ... and its last tail_chars
    edge_words: int = 12  # words at the start and at the end of the turn get their own features
    system_chars: int = 2_000  # the system prompt's first characters are read for context words
    long_words: int = 120  # a turn longer than this many words is read as instruction + material
    instruction_words: int = 40  # of a long turn, the first and last paragraph's words (up to this many each)
    stem_chars: int = 5  # words longer than this also count by their first stem_chars characters
    embed_tokens: int = 128  # the instruction's first embed_tokens WordPiece tokens are averaged (model.py)


class Parts(msgspec.Struct, frozen=True):
    """The text the classifier reads: the user turn it routes and the system prompt as context. (This and Read are
    built for every "auto" request: a frozen struct costs a fraction of a frozen dataclass.)"""

    user: str
    system: str
    turns: int  # user turns in the conversation (1 for a plain prompt)
    max_tokens: int


def parts(req: Request) -> Parts:
    """The last user turn (or `prompt`), the system messages joined, and the number of user turns."""
    if req.prompt is not None or not req.messages:
        return Parts(req.prompt or "", "", 1, req.max_tokens)
    user = ""
    system: list[str] = []
    turns = 0
    for m in req.messages:
        if m.role == "system":
            system.append(m.content)
        elif m.role == "user":
            user = m.content
            turns += 1
    if not turns:  # no user turn: route on the last message, whatever its role
        user = req.messages[-1].content
    return Parts(user, "\n".join(system), max(turns, 1), req.max_tokens)


def _window(text: str, spec: FeatureSpec, max_chars: int) -> str:
    head, tail = min(spec.head_chars, max_chars // 2), min(spec.tail_chars, max_chars // 2)
    if len(text) <= head + tail:
        return text
    return text[:head] + "\n" + text[-tail:]


_PARAGRAPH = re.compile(r"\n[ \t]{0,64}\n")


def instruction(text: str, spec: FeatureSpec) -> tuple[str, bool]:
    """The part of a turn that says what to do, and whether the turn also carries pasted material.

    A short turn is all instruction. A long one ("<email>\n\nWho signed it?", "Fix this:\n\n```...```") is read
    as its first and last paragraphs (each cut to `instruction_words` words): the pasted text in between is
    material, which counts by its size and shape (dense features), not by its words."""
    if text.count(" ") <= spec.long_words:
        return text, False
    paras = [p for p in _PARAGRAPH.split(text) if p.strip()]
    k = spec.instruction_words
    if len(paras) < 2:
        words = text.split()
        return " ".join([*words[:k], "\n", *words[-k:]]), True
    first, last = paras[0].split(), paras[-1].split()
    return " ".join([*first[:k], "\n", *last[-k:]]), True


def words(text: str) -> list[str]:
    """The text's words, lower case; a number is the word "0"."""
    # a word that starts with a decimal digit (Unicode Nd, what `\d` matches) is the number token "0"
    return ["0" if w[0].isdecimal() else w for w in _WORD.findall(text.lower())]


_BUCKET_LIMITS = (4, 10, 25, 60, 150, 400)
BUCKETS = (*(f"le{n}" for n in _BUCKET_LIMITS), "gt400")  # a size in words: the first bucket whose limit covers it


def length_bucket(n_words: int) -> str:
    return BUCKETS[bisect.bisect_left(_BUCKET_LIMITS, n_words)]


def extract(p: Parts, spec: FeatureSpec, max_chars: int = 1 << 30) -> dict[str, float]:
    """Feature name -> value. Sparse features are 1.0 (presence); dense ones are scaled to about [0, 1].

    `max_chars` (the router's `classify_max_chars`) can only narrow the windows the spec reads."""
    return extract_with_instruction(p, spec, max_chars)[0]


def extract_with_instruction(p: Parts, spec: FeatureSpec, max_chars: int = 1 << 30) -> tuple[dict[str, float], str]:
    """The features and the instruction text they were read from (its tokens are the model's last input)."""
    r = read(p, spec, max_chars)
    out: dict[str, float] = {}
    for prefix, key in sparse_keys(r, spec):
        out[prefix + ":" + (key if isinstance(key, str) else " ".join(key))] = 1.0
    out.update(dense(r, p))
    return out, r.asked


class Read(msgspec.Struct, frozen=True):
    """What the features are computed from: the windowed turn, its instruction part, and their words."""

    text: str
    asked: str
    pasted: bool
    words: list[str]
    bucket: str  # the whole turn's length bucket
    system_words: list[str]


def read(p: Parts, spec: FeatureSpec, max_chars: int = 1 << 30) -> Read:
    text = _window(p.user, spec, max_chars)
    asked, pasted = instruction(text, spec)
    all_words = text.count(" ") + text.count("\n") + 1
    n_words = all_words if len(p.user) == len(text) else round(all_words * len(p.user) / max(1, len(text)))
    system = words(p.system[: min(spec.system_chars, max_chars)]) if p.system else []
    return Read(text, asked, pasted, words(asked), length_bucket(n_words), system)


def sparse_keys(r: Read, spec: FeatureSpec) -> list[tuple[str, str | tuple[str, ...]]]:
    """The sparse (presence) features as (prefix, key): a word, or a pair of words for the bigram prefixes
    ("b", "hb") and (first word, length bucket) for "q". Names are `prefix:key` with a pair joined by a space,
    except "q" (`q:word|bucket`, see `feature_name`)."""
    words, k = r.words, spec.edge_words
    head = words[:k]
    out: list[tuple[str, str | tuple[str, ...]]] = [("w", w) for w in words]
    out += [("b", pair) for pair in itertools.pairwise(words)]
    out += [("h", w) for w in head]
    out += [("hb", pair) for pair in itertools.pairwise(head)]
    out += [("t", w) for w in words[-k:]]
    out += [("p", w[: spec.stem_chars]) for w in words if len(w) > spec.stem_chars]  # a crude stem
    if head:
        out.append(("q", head[0] + "|" + r.bucket))  # how the turn opens, by its size: "why" short vs "what" short
    out += [("s", w) for w in r.system_words]
    return out


# the dense features that are numbers (the others are the two length buckets, one-hot), in `dense_values` order
DENSE = (
    "d:pasted",
    "d:log_chars",
    "d:code_lines",
    "d:code_share",
    "d:questions",
    "d:clauses",
    "d:numbers",
    "d:max_tokens",
    "d:turns",
    "d:system",
)


def dense(r: Read, p: Parts) -> dict[str, float]:
    """The dense features by name: the turn's size in full (not just the windows), code, questions, numbers, the
    budget asked for, and the length buckets (one-hot)."""
    values = dense_values(r, p)  # (in the order training has always named them: the artifact's bytes depend on it)
    out = {"len:" + r.bucket: 1.0, DENSE[0]: values[0], "i:" + instruction_bucket(r): 1.0}
    out.update(zip(DENSE[1:], values[1:], strict=True))
    return out


def code_lines(text: str) -> int:
    """How many lines (or line ends) of `text` look like code."""
    return len(_CODE_LINE.findall(text))


def instruction_bucket(r: Read) -> str:
    """The instruction's own size, as a length bucket."""
    return length_bucket(len(r.words))


def dense_values(r: Read, p: Parts) -> tuple[float, ...]:
    """The values of the DENSE features, in that order, each scaled to [0, 1]. (The router computes this for every
    "auto" request: the caps are written out, a `min` call each cost as much as the arithmetic.)"""
    words, asked, text = r.words, r.asked, r.text
    code = code_lines(text)
    chars = math.log1p(len(p.user)) / 10
    share = code / (text.count("\n") + 1)
    clauses = (asked.count(",") + asked.count(";") + words.count("and")) / 8
    budget = math.log2(p.max_tokens) / 12 if p.max_tokens > 1 else 0.0
    questions, numbers = asked.count("?"), words.count("0")
    return (
        1.0 if r.pasted else 0.0,
        chars if chars < 1.0 else 1.0,
        code / 10 if code < 10 else 1.0,
        share if share < 1.0 else 1.0,
        questions / 3 if questions < 3 else 1.0,
        clauses if clauses < 1.0 else 1.0,
        numbers / 10 if numbers < 10 else 1.0,
        budget if budget < 1.0 else 1.0,
        (p.turns - 1) / 3 if p.turns < 4 else 1.0,
        1.0 if p.system else 0.0,
    )
