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
from collections.abc import Sequence

_PIECES = re.compile(r"\w+|[^\w\s]", re.UNICODE)
MAX_WORD_CHARS = 100  # BERT's limit: a longer "word" is unknown


class WordPiece:
    """Text -> token ids. Build once (a dict of the vocabulary); words are cached (bounded)."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self._ids = {t: i for i, t in enumerate(vocab)}
        # the "##" continuations by their text: a lookup per candidate without building "##" + candidate
        self._cont = {t[2:]: i for i, t in enumerate(vocab) if t.startswith("##")}
        self._longest = max(map(len, vocab), default=0)  # no candidate longer than a token is looked up
        self._word = functools.lru_cache(maxsize=1 << 15)(self._pieces)

    def _pieces(self, word: str) -> tuple[int, ...]:
        if len(word) > MAX_WORD_CHARS:
            return ()
        out: list[int] = []
        table, start, n, longest = self._ids, 0, len(word), self._longest
        while start < n:  # greedy longest match, as BERT's WordPiece
            for end in range(min(n, start + longest), start, -1):
                j = table.get(word[start:end])
                if j is not None:
                    out.append(j)
                    start = end
                    break
            else:
                return ()  # BERT maps the whole word to [UNK]; here it simply adds nothing
            table = self._cont
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
