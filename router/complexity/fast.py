"""The router's hot path: a request's logit, computed flat.

`ComplexityModel.score(..., signals=True)` (training, `fleet router explain`, the held-out numbers) names every
feature (features.py) and looks each name up. The router scores every "auto" request and needs no names, so this
computes the same sum in one pass: the same reading of the turn (features.read) and the same dense values
(features.dense_values), with the sparse features looked up by prefix table without building their names. The
sparse part mirrors features.sparse_keys: when that changes, this must follow, and tests/router/test_complexity.py
checks that the two agree on every request of the labelled set and on adversarial ones.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from contracts.messages import Request
from router.complexity.features import BUCKETS, DENSE, FeatureSpec, dense_values, instruction_bucket, parts, read

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
        self.dense_w = tuple(weights.get(n, 0.0) for n in DENSE)  # in DENSE order, as dense_values gives them

    def z(self, req: Request, max_chars: int = 1 << 30) -> float:
        """The logit: what features.extract_with_instruction names, weighted and summed (plus the bias and the mean
        token weight)."""
        spec = self.spec
        p = parts(req)
        r = read(p, spec, max_chars)  # the same reading of the turn as the named features
        ws, bucket = r.words, r.bucket
        # the sparse features (presence: each once), features.sparse_keys
        k = spec.edge_words
        z: float = self.bias
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
        if r.system_words:
            z += sum(map(self.system.get, set(r.system_words), _ZEROS))
        # the dense features, weighted in DENSE order
        z += self.bucket_w[bucket] + self.instruction_w[instruction_bucket(r)]
        z += sum(map(operator.mul, self.dense_w, dense_values(r, p)))
        # the instruction's tokens: the mean of their weights
        ids = self._encode(r.asked, spec.embed_tokens)
        if ids:
            z += sum(map(self._token_weights.__getitem__, ids)) / len(ids)
        return z
