"""The complexity classifier's artifact (a versioned JSON file) and the model the router scores requests with.

The score is a logistic model's probability that the request needs the stronger tier: sigmoid(bias + sum of the
weights of the request's features). The artifact also carries the threshold chosen for a target share of traffic
to the cheapest tier, the score quantiles that turn any other target share into a threshold, and the held-out
metrics measured with this very file (tests/router/test_complexity.py checks they reproduce).
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
from router.complexity.features import SPEC_VERSION, FeatureSpec, extract, parts

FORMAT = "llm-fleet/complexity-classifier"
VERSION = 1
DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "complexity-v1.json"
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

    def score(self, req: Request, max_chars: int = 1 << 30, *, signals: bool = True) -> Scored:
        """The request's score in [0, 1] and (when `signals`) the features that moved it most."""
        feats = extract(parts(req), self.spec, max_chars)
        get = self._weights.get
        if not signals:  # the hot path when nobody logs them: half the cost on a typical prompt
            return Scored(round(_sigmoid(self._bias + sum([get(n, 0.0) * v for n, v in feats.items()])), 4), ())
        contrib = [(get(n, 0.0) * v, n) for n, v in feats.items()]
        z = self._bias + sum(c for c, _ in contrib)
        top = heapq.nlargest(TOP_SIGNALS, [t for t in contrib if t[0]], key=lambda t: abs(t[0]))
        return Scored(round(_sigmoid(z), 4), tuple(f"{n}{c:+.2f}" for c, n in top))

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
    if not 0.0 <= a.threshold <= 1.0:
        raise bad(f"threshold {a.threshold} is outside [0, 1]")
    if not 0.0 < a.cheap_share_target < 1.0:
        raise bad(f"cheap_share_target {a.cheap_share_target} is outside (0, 1)")
    q = a.score_quantiles
    if len(q) != QUANTILES or any(not 0.0 <= x <= 1.0 for x in q) or any(b < x for x, b in itertools.pairwise(q)):
        raise bad(f"score_quantiles must be {QUANTILES} non-decreasing values in [0, 1]")


def decode_artifact(raw: bytes, where: str) -> Artifact:
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
