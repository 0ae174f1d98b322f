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
        self._word = functools.lru_cache(maxsize=1 << 15)(self._pieces)

    def _pieces(self, word: str) -> tuple[int, ...]:
        if len(word) > MAX_WORD_CHARS:
            return ()
        ids, out, start = self._ids, [], 0
        while start < len(word):
            end = len(word)
            found = -1
            while start < end:
                j = ids.get(word[start:end] if start == 0 else "##" + word[start:end])
                if j is not None:
                    found = j
                    break
                end -= 1
            if found < 0:
                return ()  # BERT maps the whole word to [UNK]; here it simply adds nothing
            out.append(found)
            start = end
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
