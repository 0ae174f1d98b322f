"""Training and evaluation of the complexity classifier (`fleet router train`). numpy only; deterministic for a
seed (full-batch optimisation, sequential sums, sorted vocabulary). Comes with a checkout, not with the installed
package: the router needs only what this writes (router/complexity/artifacts/).

    data (corpora/complexity/prompts.jsonl) -> train split | held-out split (fixed in the data, never tuned on)
    train split: k group-folds (seeded) -> out-of-fold scores -> the threshold for the target cheap share and the
                 score percentiles that map any other share to a threshold
                 all of it -> the final weights (L2 logistic regression on the features of
                 router/complexity/features.py and on the mean of the instruction's static token vectors,
                 corpora/complexity/token-vectors.npz; the vector weights are then folded into one weight per
                 token, which is all the artifact keeps of them)
    held-out split: scored by the written artifact through the router's own code -> the reported metrics
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

from contracts.messages import ChatMessage, Request
from router.complexity.features import FeatureSpec, extract_with_instruction, parts
from router.complexity.model import (
    FORMAT,
    QUANTILES,
    VERSION,
    Artifact,
    ComplexityModel,
    HeldOut,
    validate,
)
from router.complexity.tokens import WordPiece

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "complexity"  # the set and its sources (README.md there)
DEFAULT_DATA = CORPUS / "prompts.jsonl"
# static token vectors distilled from all-MiniLM-L6-v2 (corpora/complexity/token_vectors.py): int8, one scale
TRAINING_ONLY = "training_only"  # the tag of records written for training only (never reference traffic)
DEFAULT_TOKENS = CORPUS / "token-vectors.npz"
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    group: str
    split: str  # train | test
    complex: bool
    category: str
    tags: tuple[str, ...]
    request: Request


@dataclass(frozen=True, slots=True)
class Hyper:
    """Chosen once with group-fold cross-validation on the training split only (docs/routing.md)."""

    l2: float = 3e-3  # on every weight but the bias
    max_tokens_l2: float = 1.0  # max_tokens is a weak signal by construction: a penalty about 300 times l2
    embed_scale: float = 3.0  # the mean token vector's features are scaled by this (relative to their L2)
    min_count: int = 2  # a sparse feature must occur in this many training requests
    steps: int = 400
    lr: float = 0.05
    folds: int = 5


def load_examples(path: str | Path = DEFAULT_DATA) -> list[Example]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        r = json.loads(line)
        if r["label"] not in ("simple", "complex") or r["split"] not in ("train", "test"):
            raise ValueError(f"{path}:{n}: label must be simple|complex and split train|test")
        if "messages" in r:
            msgs = [ChatMessage(m["role"], m["content"]) for m in r["messages"]]
            req = Request(id=r["id"], reply_to="-", messages=msgs, max_tokens=r["max_tokens"])
        else:
            req = Request(id=r["id"], reply_to="-", prompt=r["prompt"], max_tokens=r["max_tokens"])
        out.append(
            Example(r["id"], r["group"], r["split"], r["label"] == "complex", r["category"], tuple(r["tags"]), req)
        )
    return out


def data_sha256(path: str | Path = DEFAULT_DATA) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenVectors:
    tokens: list[str]
    vectors: F64  # [tokens, dims], centred
    source: str
    sha256: str

    @classmethod
    def load(cls, path: str | Path = DEFAULT_TOKENS) -> TokenVectors:
        with np.load(Path(path), allow_pickle=False) as z:
            vectors = z["vectors"].astype(np.float64) * float(z["scale"])
            return cls([str(t) for t in z["tokens"]], vectors, str(z["source"]), data_sha256(path))

    def features(self, wordpiece: WordPiece, asked: str, spec: FeatureSpec, scale: float) -> dict[str, float]:
        """The dense features "e:0".."e:{dims-1}": the mean vector of the instruction's tokens, times `scale`."""
        ids = wordpiece.encode(asked, spec.embed_tokens)
        if not ids:
            return {}
        mean = self.vectors[ids].mean(axis=0) * scale
        return {f"e:{i}": float(x) for i, x in enumerate(mean)}


def featurize(examples: Sequence[Example], spec: FeatureSpec, tv: TokenVectors, hp: Hyper) -> list[dict[str, float]]:
    wordpiece = WordPiece(tv.tokens)
    out = []
    for e in examples:
        feats, asked = extract_with_instruction(parts(e.request), spec)
        feats.update(tv.features(wordpiece, asked, spec, hp.embed_scale))
        out.append(feats)
    return out


# -- the model: L2 logistic regression on a sparse matrix, full-batch Adam -------------------------------------------
@dataclass(frozen=True, slots=True)
class Sparse:
    """Rows of (column, value): CSR without scipy. Every row has entries (the dense features are always there)."""

    indptr: I64
    indices: I64
    data: F64
    rows: I64  # the row of each entry
    n_cols: int

    @classmethod
    def build(cls, feats: Sequence[dict[str, float]], vocab: dict[str, int]) -> Sparse:
        indptr, indices, data = [0], [], []
        for f in feats:
            for name in sorted(f):
                j = vocab.get(name)
                if j is not None:
                    indices.append(j)
                    data.append(f[name])
            indptr.append(len(indices))
        ip = np.asarray(indptr, dtype=np.int64)
        rows = np.repeat(np.arange(len(feats), dtype=np.int64), np.diff(ip))
        return cls(ip, np.asarray(indices, np.int64), np.asarray(data, np.float64), rows, len(vocab))

    def dot(self, w: F64) -> F64:
        out: F64 = np.add.reduceat(self.data * w[self.indices], self.indptr[:-1])
        return out

    def tdot(self, r: F64) -> F64:
        out: F64 = np.bincount(self.indices, weights=self.data * r[self.rows], minlength=self.n_cols).astype(np.float64)
        return out


def fit(x: Sparse, y: F64, penalty: F64, hp: Hyper, seed: int) -> tuple[F64, float]:
    """Weights and bias minimising the class-balanced log loss plus 0.5 * penalty * w^2."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 1e-3, x.n_cols)
    b = 0.0
    pos = max(1.0, float(y.sum()))
    neg = max(1.0, float(len(y) - y.sum()))
    sw = np.where(y > 0, len(y) / (2 * pos), len(y) / (2 * neg)) / len(y)  # balanced, sums to 1
    m_w, v_w = np.zeros_like(w), np.zeros_like(w)
    m_b = v_b = 0.0
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(1, hp.steps + 1):
        p = 1.0 / (1.0 + np.exp(-(x.dot(w) + b)))
        r = sw * (p - y)
        g_w = x.tdot(r) + penalty * w
        g_b = float(r.sum())
        m_w = b1 * m_w + (1 - b1) * g_w
        v_w = b2 * v_w + (1 - b2) * g_w * g_w
        m_b = b1 * m_b + (1 - b1) * g_b
        v_b = b2 * v_b + (1 - b2) * g_b * g_b
        c1, c2 = 1 - b1**t, 1 - b2**t
        w = w - hp.lr * (m_w / c1) / (np.sqrt(v_w / c2) + eps)
        b = b - hp.lr * (m_b / c1) / (np.sqrt(v_b / c2) + eps)
    return w, b


def _vocab(feats: Iterable[dict[str, float]], min_count: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in feats:
        for name in f:
            counts[name] = counts.get(name, 0) + 1
    keep = sorted(n for n, c in counts.items() if c >= min_count or n.startswith(("d:", "len:", "i:", "e:")))
    return {n: i for i, n in enumerate(keep)}


def _penalty(vocab: dict[str, int], hp: Hyper) -> F64:
    pen = np.full(len(vocab), hp.l2)
    if "d:max_tokens" in vocab:
        pen[vocab["d:max_tokens"]] = hp.max_tokens_l2
    return pen


def _sigmoid(z: F64) -> F64:
    out: F64 = 1.0 / (1.0 + np.exp(-z))
    return out


def out_of_fold(examples: Sequence[Example], feats: Sequence[dict[str, float]], hp: Hyper, seed: int) -> F64:
    """Each training request scored by a model that never saw its group (k folds of groups, shuffled by seed)."""
    groups = sorted({e.group for e in examples})
    order = np.random.default_rng(seed).permutation(len(groups))
    fold_of = {groups[g]: i % hp.folds for i, g in enumerate(order)}
    folds = np.asarray([fold_of[e.group] for e in examples])
    y = np.asarray([float(e.complex) for e in examples])
    scores = np.zeros(len(examples))
    for k in range(hp.folds):
        tr, te = np.flatnonzero(folds != k).tolist(), np.flatnonzero(folds == k).tolist()
        vocab = _vocab((feats[i] for i in tr), hp.min_count)
        w, b = fit(Sparse.build([feats[i] for i in tr], vocab), y[tr], _penalty(vocab, hp), hp, seed + 1 + k)
        scores[te] = _sigmoid(Sparse.build([feats[i] for i in te], vocab).dot(w) + b)
    return scores


# -- metrics --------------------------------------------------------------------------------------------------------
def auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """ROC AUC by ranks (ties count half)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if not pos or not neg:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return round(float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg)), 4)


def counts(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> dict[str, int]:
    cheap = [s <= threshold for s in scores]
    return {
        "requests": len(scores),
        "simple": sum(not c for c in labels),
        "complex": sum(labels),
        "to_cheap": sum(cheap),
        "complex_to_cheap": sum(ch and c for ch, c in zip(cheap, labels, strict=True)),
        "simple_sent_up": sum((not ch) and (not c) for ch, c in zip(cheap, labels, strict=True)),
    }


def heldout_metrics(scores: Sequence[float], examples: Sequence[Example], threshold: float) -> HeldOut:
    labels = [e.complex for e in examples]
    c = counts(scores, labels, threshold)
    by_tag: dict[str, dict[str, int]] = {}
    for tag in sorted({t for e in examples for t in e.tags}):
        idx = [i for i, e in enumerate(examples) if tag in e.tags]
        by_tag[tag] = counts([scores[i] for i in idx], [labels[i] for i in idx], threshold)
    return HeldOut(
        threshold=threshold,
        **c,
        cheap_share=round(c["to_cheap"] / max(1, c["requests"]), 4),
        complex_misrouted=round(c["complex_to_cheap"] / max(1, c["complex"]), 4),
        simple_up_share=round(c["simple_sent_up"] / max(1, c["simple"]), 4),
        auc=auc(scores, labels),
        by_tag=by_tag,
    )


def curve(scores: Sequence[float], labels: Sequence[bool], steps: int = 100) -> list[dict[str, float]]:
    """The three routing shares at thresholds 0, 1/steps, ..., 1 (the cheap tier takes scores <= threshold)."""
    out = []
    for k in range(steps + 1):
        t = k / steps
        c = counts(scores, labels, t)
        out.append(
            {
                "threshold": t,
                "cheap_share": c["to_cheap"] / max(1, c["requests"]),
                "complex_misrouted": c["complex_to_cheap"] / max(1, c["complex"]),
                "simple_sent_up": c["simple_sent_up"] / max(1, c["simple"]),
            }
        )
    return out


# -- the whole run --------------------------------------------------------------------------------------------------
def train(
    data: str | Path = DEFAULT_DATA,
    *,
    seed: int = 0,
    cheap_share: float = 0.6,
    hp: Hyper | None = None,
    spec: FeatureSpec | None = None,
    token_vectors: str | Path = DEFAULT_TOKENS,
) -> Artifact:
    """Train on the data's train split and measure on its held-out split; the returned artifact is what the router
    loads (write it with model.encode_artifact)."""
    hp = hp or Hyper()
    spec = spec or FeatureSpec()
    if not 0.0 < cheap_share < 1.0:
        raise ValueError(f"cheap_share must be between 0 and 1 (exclusive), got {cheap_share}")
    examples = load_examples(data)
    tr = [e for e in examples if e.split == "train"]
    te = [e for e in examples if e.split == "test"]
    if not tr or not te or all(e.complex for e in tr) or not any(e.complex for e in tr):
        raise ValueError(f"{data}: needs both labels in the train split and a non-empty held-out split")
    tv = TokenVectors.load(token_vectors)
    feats = featurize(tr, spec, tv, hp)
    oof = out_of_fold(tr, feats, hp, seed)
    # the reference traffic a cheap share is a share of: the training split without the training-only pass
    # (corpora/complexity/short_cases.py), which over-samples short hard prompts on purpose
    ref = np.asarray([TRAINING_ONLY not in e.tags for e in tr])
    quantiles = [round(float(q), 6) for q in np.quantile(oof[ref], np.linspace(0, 1, QUANTILES))]
    vocab = _vocab(feats, hp.min_count)
    y = np.asarray([float(e.complex) for e in tr])
    w, b = fit(Sparse.build(feats, vocab), y, _penalty(vocab, hp), hp, seed)
    # fold the vector weights into one weight per token: w . scale * mean(v_t) = mean(scale * w . v_t)
    dims = tv.vectors.shape[1]
    w_e = np.asarray([w[vocab[f"e:{i}"]] if f"e:{i}" in vocab else 0.0 for i in range(dims)])
    token_weights = [round(float(x), 5) for x in (tv.vectors @ w_e) * hp.embed_scale]
    # what ships: rounded, with the weights that cannot move a score dropped; the metrics are measured on it
    keep = [(n, round(float(w[j]), 5)) for n, j in vocab.items() if abs(w[j]) >= 1e-4 and not n.startswith("e:")]
    draft = Artifact(
        format=FORMAT,
        version=VERSION,
        spec=spec,
        features=[n for n, _ in keep],
        weights=[v for _, v in keep],
        bias=round(float(b), 5),
        tokens=tv.tokens,
        token_weights=token_weights,
        threshold=0.0,
        cheap_share_target=cheap_share,
        score_quantiles=quantiles,
        heldout=heldout_metrics([], [], 0.0),  # measured below, with this draft's own scores
    )
    model = ComplexityModel(draft, "<training>")
    threshold = model.threshold_for_share(cheap_share)
    scores = [model.score(e.request).score for e in te]
    artifact = msgspec.structs.replace(
        draft,
        threshold=threshold,
        heldout=heldout_metrics(scores, te, threshold),
        training={
            "seed": seed,
            "data": Path(data).name,
            "data_sha256": data_sha256(data),
            "train_requests": len(tr),
            "train_complex": int(y.sum()),
            "heldout_requests": len(te),
            "vocabulary": len(vocab),
            "kept_weights": len(keep),
            "threshold_from": f"out-of-fold scores ({hp.folds} group folds) of the training split's {int(ref.sum())} "
            f"requests not tagged {TRAINING_ONLY}",
            "out_of_fold_auc": auc([float(s) for s in oof], [e.complex for e in tr]),
            "max_tokens_weight": round(float(w[vocab["d:max_tokens"]]), 5) if "d:max_tokens" in vocab else 0.0,
            "token_vectors": f"{Path(token_vectors).name}: {len(tv.tokens)} x {dims} ({tv.source})",
            "token_vectors_sha256": tv.sha256,
            "hyper": {k: getattr(hp, k) for k in hp.__dataclass_fields__},
        },
    )
    validate(artifact, "<training>")
    return artifact


def heldout_scores(model: ComplexityModel, data: str | Path = DEFAULT_DATA) -> tuple[list[Example], list[float]]:
    """The held-out examples and the model's scores for them."""
    te = [e for e in load_examples(data) if e.split == "test"]
    return te, [model.score(e.request).score for e in te]
