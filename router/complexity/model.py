"""The complexity classifier's artifact (a versioned JSON file) and the model the router scores requests with.

The score is a logistic model's probability that the request needs the stronger tier: sigmoid(bias + sum of the
weights of the request's features + the mean of the weights of its instruction's WordPiece tokens). The token
weights are a linear model on static token vectors distilled from all-MiniLM-L6-v2
(corpora/complexity/token_vectors.py), folded at training time into one number per token: w . mean(v_t) =
mean(w . v_t), so the router looks tokens up and never holds the vectors. The artifact also carries the threshold
chosen for a target share of traffic to the cheapest tier, the score quantiles that turn any other target share
into a threshold, and the held-out metrics measured with this very file (tests/router/test_complexity.py checks
they reproduce).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import operator
from pathlib import Path
from typing import Any

import msgspec

from contracts.messages import Request
from router.complexity.features import (
    BUCKETS,
    DENSE,
    SPEC_VERSION,
    FeatureSpec,
    dense_values,
    extract_with_instruction,
    instruction_bucket,
    parts,
    read,
)
from router.complexity.tokens import WordPiece

FORMAT = "llm-fleet/complexity-classifier"
VERSION = 2  # 2: adds the token vocabulary and one weight per token (v1 files: retrain with `fleet router train`)
DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "complexity-v2.json"
QUANTILES = 101  # score_quantiles[i] is the i-th percentile of the reference scores
TOP_SIGNALS = 4
_ZEROS = itertools.repeat(0.0)  # the default of every lookup in `z` (map stops with the keys)


class ClassifierError(ValueError):
    """The classifier artifact or the tiers configured around it cannot be used; raised at start-up."""


class HeldOut(msgspec.Struct, frozen=True, kw_only=True):
    """Metrics on the held-out split at the artifact's threshold."""

    threshold: float
    requests: int
    simple: int
    complex: int
    to_cheap: int  # requests scored at or below the threshold
    complex_to_cheap: int
    simple_sent_up: int
    cheap_share: float
    complex_misrouted: float  # complex_to_cheap / complex
    simple_up_share: float  # simple_sent_up / simple
    auc: float
    by_tag: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)  # tag -> counts as above


class Artifact(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str
    version: int
    spec: FeatureSpec
    features: list[str]
    weights: list[float]
    bias: float
    tokens: list[str]  # the WordPiece vocabulary (all-MiniLM-L6-v2's), in id order
    token_weights: list[float]  # one per token: the mean over the instruction's tokens is added to the logit
    threshold: float  # cheap tier takes scores <= threshold
    cheap_share_target: float  # the share of reference traffic the threshold sends to the cheap tier
    score_quantiles: list[float]  # of the reference scores (out-of-fold on the training split)
    heldout: HeldOut
    training: dict[str, Any] = msgspec.field(default_factory=dict)  # seed, data hash, hyperparameters, counts


class Scored(msgspec.Struct, frozen=True):
    score: float
    signals: tuple[str, ...]  # the features that moved the score most, as "name+weight"


class ComplexityModel:
    """A loaded artifact: scores requests. Pure; build once at start-up and share."""

    def __init__(self, artifact: Artifact, source: str) -> None:
        self.artifact = artifact
        self.source = source
        self.spec = artifact.spec
        self.threshold = artifact.threshold
        self._weights = dict(zip(artifact.features, artifact.weights, strict=True))
        self._bias = artifact.bias
        self._wordpiece = WordPiece(artifact.tokens)
        self._token_weights = artifact.token_weights
        # the same weights by prefix and key, for the hot path (no feature names built): "b:a c" -> ("a", "c")
        self._tables: dict[str, dict[object, float]] = {}
        for name, w in self._weights.items():
            prefix, _, rest = name.partition(":")
            key: object = tuple(rest.split(" ")) if prefix in ("b", "hb") else rest
            self._tables.setdefault(prefix, {})[key] = w
        # a turn of at most edge_words words is its own head and tail: its words' three tables add up to one, and
        # its pairs' two
        t = self._tables
        self._short_words = _merged(t.get("w", {}), t.get("h", {}), t.get("t", {}))
        self._short_pairs = _merged(t.get("b", {}), t.get("hb", {}))
        get = self._weights.get
        self._bucket_w = {b: get("len:" + b, 0.0) for b in BUCKETS}
        self._instruction_w = {b: get("i:" + b, 0.0) for b in BUCKETS}
        self._dense_w = tuple(get(n, 0.0) for n in DENSE)

    def score(self, req: Request, max_chars: int = 1 << 30, *, signals: bool = True) -> Scored:
        """The request's score in [0, 1] and (when `signals`) the features that moved it most."""
        if not signals:  # the hot path when nobody logs them: no feature names are built
            return Scored(round(_sigmoid(self.z(req, max_chars)), 4), ())
        feats, asked = extract_with_instruction(parts(req), self.spec, max_chars)
        ids = self._wordpiece.encode(asked, self.spec.embed_tokens)
        tw = self._token_weights
        get = self._weights.get
        contrib = [(get(n, 0.0) * v, n) for n, v in feats.items()]
        for i in sorted(set(ids)):  # a token's share of the mean: "e:prove+0.31"
            contrib.append((tw[i] * ids.count(i) / len(ids), "e:" + self.artifact.tokens[i]))
        z = self._bias + sum(c for c, _ in contrib)
        top = heapq.nlargest(TOP_SIGNALS, [t for t in contrib if t[0]], key=lambda t: abs(t[0]))
        return Scored(round(_sigmoid(z), 4), tuple(f"{n}{c:+.2f}" for c, n in top))

    def z(self, req: Request, max_chars: int = 1 << 30) -> float:
        """The score's logit, as `score` computes it from the named features, read through the prefix tables
        (tests/router/test_complexity.py checks the two agree on every request of the labelled set).

        The same sum as `sparse_keys` and `dense` name, per prefix over sets (presence: each feature once), with
        the lookups in C (`map`): the router runs this on every "auto" request."""
        p = parts(req)
        spec = self.spec
        r = read(p, spec, max_chars)
        t = self._tables
        words, k = r.words, spec.edge_words
        z: float = self._bias
        if len(words) <= k:  # head == tail == words
            z += sum(map(self._short_words.get, set(words), _ZEROS))
            if len(words) > 1:
                z += sum(map(self._short_pairs.get, set(itertools.pairwise(words)), _ZEROS))
        else:
            head = words[:k]
            for prefix, keys in (
                ("w", words),
                ("b", itertools.pairwise(words)),
                ("h", head),
                ("hb", itertools.pairwise(head)),
                ("t", words[-k:]),
            ):
                if table := t.get(prefix):
                    z += sum(map(table.get, set(keys), _ZEROS))
        stem = spec.stem_chars
        if (table := t.get("p")) and (stems := {w[:stem] for w in words if len(w) > stem}):
            z += sum(map(table.get, stems, _ZEROS))
        if r.system_words and (table := t.get("s")):
            z += sum(map(table.get, set(r.system_words), _ZEROS))
        if words and (q := t.get("q")):
            z += q.get(words[0] + "|" + r.bucket, 0.0)
        z += self._bucket_w[r.bucket] + self._instruction_w[instruction_bucket(r)]
        z += sum(map(operator.mul, self._dense_w, dense_values(r, p)))
        ids = self._wordpiece.encode(r.asked, spec.embed_tokens)
        if ids:
            z += sum(map(self._token_weights.__getitem__, ids)) / len(ids)
        return z

    def threshold_for_share(self, cheap_share: float) -> float:
        """The threshold that sends `cheap_share` of the reference traffic to the cheap tier (interpolated
        between the stored percentiles)."""
        if not 0.0 < cheap_share < 1.0:
            raise ClassifierError(f"cheap_share must be between 0 and 1 (exclusive), got {cheap_share}")
        q = self.artifact.score_quantiles
        pos = cheap_share * (len(q) - 1)
        lo = int(pos)
        return round(q[lo] + (q[min(lo + 1, len(q) - 1)] - q[lo]) * (pos - lo), 6)


def _merged(*tables: dict[object, float]) -> dict[object, float]:
    """One table whose weight for a key is the sum of its weights in `tables`."""
    out: dict[object, float] = {}
    for table in tables:
        for key, w in table.items():
            out[key] = out.get(key, 0.0) + w
    return out


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def validate(a: Artifact, where: str) -> None:
    """Raise ClassifierError naming the first thing wrong with an artifact decoded from `where`."""

    def bad(msg: str) -> ClassifierError:
        return ClassifierError(f"complexity classifier artifact {where}: {msg}")

    if a.format != FORMAT or a.version != VERSION:
        raise bad(f"is {a.format!r} version {a.version}; this router reads {FORMAT!r} version {VERSION}")
    if a.spec.version != SPEC_VERSION:
        raise bad(f"feature spec version {a.spec.version}; this router extracts version {SPEC_VERSION}")
    if len(a.features) != len(a.weights):
        raise bad(f"{len(a.features)} feature names but {len(a.weights)} weights")
    if len(set(a.features)) != len(a.features):
        raise bad("duplicate feature names")
    if not all(math.isfinite(w) for w in a.weights) or not math.isfinite(a.bias):
        raise bad("a weight or the bias is not a finite number")
    if len(a.tokens) != len(a.token_weights):
        raise bad(f"{len(a.tokens)} tokens but {len(a.token_weights)} token weights")
    if not all(math.isfinite(w) for w in a.token_weights):
        raise bad("a token weight is not a finite number")
    if not 0.0 <= a.threshold <= 1.0:
        raise bad(f"threshold {a.threshold} is outside [0, 1]")
    if not 0.0 < a.cheap_share_target < 1.0:
        raise bad(f"cheap_share_target {a.cheap_share_target} is outside (0, 1)")
    q = a.score_quantiles
    if len(q) != QUANTILES or any(not 0.0 <= x <= 1.0 for x in q) or any(b < x for x, b in itertools.pairwise(q)):
        raise bad(f"score_quantiles must be {QUANTILES} non-decreasing values in [0, 1]")


class _Header(msgspec.Struct, frozen=True):
    """What any version of the artifact starts with: read first, so that another version is named as such."""

    format: str
    version: int


def decode_artifact(raw: bytes, where: str) -> Artifact:
    try:
        head = msgspec.json.decode(raw, type=_Header)
    except msgspec.DecodeError as exc:
        raise ClassifierError(f"complexity classifier artifact {where} is not a valid artifact: {exc}") from None
    if head.format != FORMAT or head.version != VERSION:
        raise ClassifierError(
            f"complexity classifier artifact {where} is {head.format!r} version {head.version}; this router reads "
            f"{FORMAT!r} version {VERSION} (retrain with `fleet router train --out PATH`, or leave "
            "router.classifier_path unset for the shipped one)"
        )
    try:
        a = msgspec.json.decode(raw, type=Artifact)
    except msgspec.DecodeError as exc:
        raise ClassifierError(f"complexity classifier artifact {where} is not a valid artifact: {exc}") from None
    validate(a, where)
    return a


@functools.lru_cache(maxsize=8)
def _load(path: str) -> ComplexityModel:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ClassifierError(
            f"complexity classifier artifact {path} does not exist (router.classifier_path; "
            "`fleet router train --out PATH` writes one)"
        ) from None
    except OSError as exc:
        raise ClassifierError(f"complexity classifier artifact {path} cannot be read: {exc}") from None
    return ComplexityModel(decode_artifact(raw, path), path)


def load_model(path: str | Path | None = None) -> ComplexityModel:
    """The model in `path` (None: the artifact shipped with the package). Raises ClassifierError; loaded once per
    path and process (the model is immutable)."""
    return _load(str(Path(path).expanduser().resolve() if path is not None else DEFAULT_ARTIFACT))


def encode_artifact(a: Artifact) -> bytes:
    """Stable bytes: the same artifact always writes the same file."""
    return msgspec.json.format(msgspec.json.encode(a), indent=1) + b"\n"
