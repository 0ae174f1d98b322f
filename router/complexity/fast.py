"""The router's hot path: a request's logit, computed flat.

`ComplexityModel.score(..., signals=True)` (training, `fleet router explain`, the held-out numbers) names every
feature (features.py) and looks each name up. The router scores every "auto" request and needs no names, so this
computes the same sum in one pass: the same reading of the turn (features.read), the sparse features looked up by
prefix table without building their names, the dense ones weighted as they are computed. Nothing here decides what
a feature is: when features.py changes, this must follow, and tests/router/test_complexity.py checks that the two
agree on every request of the labelled set.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from contracts.messages import Request
from router.complexity.features import BUCKETS, DENSE, FeatureSpec, code_lines, instruction, length_bucket, parts, words

_ZEROS = itertools.repeat(0.0)  # the default of every lookup (map stops with the keys)


def _merged(*tables: Mapping[Any, float]) -> dict[Any, float]:
    """One table whose weight for a key is the sum of its weights in `tables`."""
    out: dict[Any, float] = {}
    for table in tables:
        for key, w in table.items():
            out[key] = out.get(key, 0.0) + w
    return out


class FlatScorer:
    """The logit of a request from a model's weights (built once per model; pure)."""

    def __init__(
        self,
        spec: FeatureSpec,
        weights: Mapping[str, float],
        bias: float,
        encode: Callable[[str, int], list[int]],
        token_weights: Sequence[float],
    ) -> None:
        self.spec = spec
        self.bias = bias
        self._encode = encode
        self._token_weights = token_weights
        # the weights by prefix and key (no names built per request): "b:a c" -> ("a", "c"), "q:why|le4" -> "why|le4"
        tables: dict[str, dict[Any, float]] = {}
        for name, w in weights.items():
            prefix, _, rest = name.partition(":")
            key: Any = tuple(rest.split(" ")) if prefix in ("b", "hb") else rest
            tables.setdefault(prefix, {})[key] = w
        self.words, self.pairs = tables.get("w", {}), tables.get("b", {})
        self.head, self.head_pairs, self.tail = tables.get("h", {}), tables.get("hb", {}), tables.get("t", {})
        self.stems, self.system, self.opening = tables.get("p", {}), tables.get("s", {}), tables.get("q", {})
        # a turn of at most edge_words words is its own head and tail: its words' three tables add up to one, and
        # its pairs' two
        self.short_words = _merged(self.words, self.head, self.tail)
        self.short_pairs = _merged(self.pairs, self.head_pairs)
        self.bucket_w = {b: weights.get("len:" + b, 0.0) for b in BUCKETS}
        self.instruction_w = {b: weights.get("i:" + b, 0.0) for b in BUCKETS}
        self.dense_w = tuple(weights.get(n, 0.0) for n in DENSE)  # in DENSE order, as z unpacks them

    def z(self, req: Request, max_chars: int = 1 << 30) -> float:
        """The logit: what features.extract_with_instruction names, weighted and summed (plus the bias and the mean
        token weight)."""
        spec = self.spec
        if req.prompt is not None or not req.messages:
            user, system, turns = req.prompt or "", "", 1
        else:
            p = parts(req)
            user, system, turns = p.user, p.system, p.turns
        # features.read, inlined
        half = max_chars // 2
        head_chars, tail_chars = min(spec.head_chars, half), min(spec.tail_chars, half)
        text = user if len(user) <= head_chars + tail_chars else user[:head_chars] + "\n" + user[-tail_chars:]
        asked, pasted = instruction(text, spec)
        newlines = text.count("\n")
        all_words = text.count(" ") + newlines + 1
        n_words = all_words if len(user) == len(text) else round(all_words * len(user) / max(1, len(text)))
        bucket = length_bucket(n_words)
        ws = words(asked)
        # the sparse features (presence: each once), features.sparse_keys
        k = spec.edge_words
        z = self.bias
        if len(ws) <= k:  # head == tail == words
            z += sum(map(self.short_words.get, set(ws), _ZEROS))
            if len(ws) > 1:
                z += sum(map(self.short_pairs.get, set(itertools.pairwise(ws)), _ZEROS))
        else:
            head = ws[:k]
            z += sum(map(self.words.get, set(ws), _ZEROS))
            z += sum(map(self.pairs.get, set(itertools.pairwise(ws)), _ZEROS))
            z += sum(map(self.head.get, set(head), _ZEROS))
            z += sum(map(self.head_pairs.get, set(itertools.pairwise(head)), _ZEROS))
            z += sum(map(self.tail.get, set(ws[-k:]), _ZEROS))
        stem = spec.stem_chars
        z += sum(map(self.stems.get, {w[:stem] for w in ws if len(w) > stem}, _ZEROS))
        if ws:
            z += self.opening.get(ws[0] + "|" + bucket, 0.0)
        if system:
            z += sum(map(self.system.get, set(words(system[: min(spec.system_chars, max_chars)])), _ZEROS))
        # the dense features, features.dense_values (each capped at 1; the common zeros skipped)
        (w_pasted, w_chars, w_code, w_share, w_questions, w_clauses, w_numbers, w_budget, w_turns, w_system) = (
            self.dense_w
        )
        z += self.bucket_w[bucket] + self.instruction_w[length_bucket(len(ws))]
        z += w_chars * min(1.0, math.log1p(len(user)) / 10) + w_budget * min(
            1.0, math.log2(max(1, req.max_tokens)) / 12
        )
        if pasted:
            z += w_pasted
        if code := code_lines(text):
            z += w_code * min(1.0, code / 10) + w_share * min(1.0, code / (newlines + 1))
        if questions := asked.count("?"):
            z += w_questions * min(1.0, questions / 3)
        if clauses := asked.count(",") + asked.count(";") + ws.count("and"):
            z += w_clauses * min(1.0, clauses / 8)
        if numbers := ws.count("0"):
            z += w_numbers * min(1.0, numbers / 10)
        if turns > 1:
            z += w_turns * min(1.0, (turns - 1) / 3)
        if system:
            z += w_system
        # the instruction's tokens: the mean of their weights
        ids = self._encode(asked, spec.embed_tokens)
        if ids:
            z += sum(map(self._token_weights.__getitem__, ids)) / len(ids)
        return z
