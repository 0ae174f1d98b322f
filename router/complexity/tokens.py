"""WordPiece over the all-MiniLM-L6-v2 vocabulary, in pure Python: the router only needs token ids to look up one
weight per token (model.py), not the embedder.

It follows BERT's uncased tokenizer closely (lower case, accents stripped, words and single punctuation marks, then
greedy longest-match pieces with "##" continuations) but need not match it exactly: training and the router both
tokenize with this code, so the token table is only ever read through it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence

_PIECES = re.compile(r"\w+|[^\w\s]", re.UNICODE)
MAX_WORD_CHARS = 100  # BERT's limit: a longer "word" is unknown
PREFIX = -1  # in a piece table: the start of some piece, not a piece itself


def _with_prefixes(pieces: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Piece -> id, and every proper prefix of a piece (that is not a piece itself) -> PREFIX."""
    table: dict[str, int] = {}
    for text, i in pieces:
        table[text] = i
    for text in list(table):
        for k in range(1, len(text)):
            table.setdefault(text[:k], PREFIX)
    return table


class WordPiece:
    """Text -> token ids. Build once (a dict of the vocabulary); words are cached (bounded)."""

    def __init__(self, vocab: Sequence[str]) -> None:
        # word-initial pieces and "##" continuations (by their text after "##"), each with every prefix of a piece
        # mapped to PREFIX: the longest match is found by reading forward until no piece starts that way
        self._initial = _with_prefixes((t, i) for i, t in enumerate(vocab) if not t.startswith("##"))
        self._continuation = _with_prefixes((t[2:], i) for i, t in enumerate(vocab) if t.startswith("##"))
        self._word = functools.lru_cache(maxsize=1 << 15)(self._pieces)

    def _pieces(self, word: str) -> tuple[int, ...]:
        """Greedy longest-match pieces, as BERT's WordPiece: at each position the longest piece that starts the
        rest of the word. () when some position has none (BERT maps the whole word to [UNK]; here it adds
        nothing)."""
        if len(word) > MAX_WORD_CHARS:
            return ()
        out: list[int] = []
        table, start, n = self._initial, 0, len(word)
        while start < n:
            found, found_end, end = PREFIX, start, start + 1
            while end <= n and (j := table.get(word[start:end])) is not None:
                if j != PREFIX:
                    found, found_end = j, end
                end += 1
            if found == PREFIX:
                return ()
            out.append(found)
            start = found_end
            table = self._continuation
        return tuple(out)

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """The first `max_tokens` token ids of `text`."""
        t = text.lower()
        if not t.isascii():  # accents off, as BERT's uncased tokenizer does: "déjà" -> "deja"
            t = "".join(c for c in unicodedata.normalize("NFD", t) if unicodedata.category(c) != "Mn")
        out: list[int] = []
        for w in _PIECES.findall(t):
            out.extend(self._word(w))
            if len(out) >= max_tokens:
                break
        return out[:max_tokens]
