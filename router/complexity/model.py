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
from pathlib import Path
from typing import Any

import msgspec

from contracts.messages import Request
from router.complexity.fast import FlatScorer
from router.complexity.features import SPEC_VERSION, FeatureSpec, extract_with_instruction, parts
from router.complexity.tokens import WordPiece

FORMAT = "llm-fleet/complexity-classifier"
VERSION = 2  # 2: adds the token vocabulary and one weight per token (v1 files: retrain with `fleet router train`)
DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "complexity-v2.json"
QUANTILES = 101  # score_quantiles[i] is the i-th percentile of the reference scores
TOP_SIGNALS = 4


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
        self._flat = FlatScorer(
            artifact.spec, self._weights, artifact.bias, self._wordpiece.encode, artifact.token_weights
        )

    def score(self, req: Request, max_chars: int = 1 << 30, *, signals: bool = True) -> Scored:
        """The request's score in [0, 1] and (when `signals`) the features that moved it most."""
        if not signals:  # the hot path when nobody logs them: no feature names are built
            return Scored(self.fast_score(req, max_chars), ())
        contrib = self.contributions(req, max_chars)
        z = self._bias + sum(c for c, _ in contrib)
        top = heapq.nlargest(TOP_SIGNALS, [t for t in contrib if t[0]], key=lambda t: abs(t[0]))
        return Scored(round(_sigmoid(z), 4), tuple(f"{n}{c:+.2f}" for c, n in top))

    def contributions(self, req: Request, max_chars: int = 1 << 30) -> list[tuple[float, str]]:
        """What each named feature adds to the logit (the bias aside), as (weight * value, name)."""
        feats, asked = extract_with_instruction(parts(req), self.spec, max_chars)
        ids = self._wordpiece.encode(asked, self.spec.embed_tokens)
        tw = self._token_weights
        get = self._weights.get
        contrib = [(get(n, 0.0) * v, n) for n, v in feats.items()]
        for i in sorted(set(ids)):  # a token's share of the mean: "e:prove+0.31"
            contrib.append((tw[i] * ids.count(i) / len(ids), "e:" + self.artifact.tokens[i]))
        return contrib

    def fast_score(self, req: Request, max_chars: int = 1 << 30) -> float:
        """The score alone, as `score` gives it, from the flat logit (no names, no signals)."""
        return round(_sigmoid(self._flat.z(req, max_chars)), 4)

    def z(self, req: Request, max_chars: int = 1 << 30) -> float:
        """The score's logit: the bias plus the sum of `contributions`, computed flat (fast.py: the router runs
        this on every "auto" request)."""
        return self._flat.z(req, max_chars)

    def threshold_for_share(self, cheap_share: float) -> float:
        """The threshold that sends `cheap_share` of the reference traffic to the cheap tier (interpolated
        between the stored percentiles)."""
        if not 0.0 < cheap_share < 1.0:
            raise ClassifierError(f"cheap_share must be between 0 and 1 (exclusive), got {cheap_share}")
        q = self.artifact.score_quantiles
        pos = cheap_share * (len(q) - 1)
        lo = int(pos)
        return round(q[lo] + (q[min(lo + 1, len(q) - 1)] - q[lo]) * (pos - lo), 6)


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
