"""Sampling, acceptance and stop checks: pure functions with fixed seeds."""

from __future__ import annotations

import pytest
import torch

from worker.engine import sampling
from worker.engine.api import FinishKind, SamplingParams


def test_top_p_keeps_the_smallest_nucleus_and_renormalises() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    p = sampling.probs(logits, temperature=1.0, top_p=0.7)
    assert torch.allclose(p, torch.tensor([0.5, 0.3, 0.0, 0.0]) / 0.8)
    assert torch.allclose(sampling.probs(logits, 1.0, top_p=0.01), torch.tensor([1.0, 0, 0, 0]))
    flat = sampling.probs(logits, temperature=1e6)
    assert torch.allclose(flat, torch.full((4,), 0.25), atol=1e-4)


def test_a_seeded_generator_samples_the_same_tokens() -> None:
    logits = torch.randn(50, generator=torch.Generator().manual_seed(0))
    params = SamplingParams(max_tokens=8, temperature=0.8, top_p=0.9, seed=3)
    a = [sampling.next_token(logits, params, torch.Generator().manual_seed(3)) for _ in range(1)]
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert [sampling.next_token(logits, params, g1) for _ in range(20)] == [
        sampling.next_token(logits, params, g2) for _ in range(20)
    ]
    assert a[0] == sampling.next_token(logits, params, torch.Generator().manual_seed(3))
    assert sampling.next_token(logits, SamplingParams(max_tokens=1), g1) == int(logits.argmax())


def test_greedy_accept_takes_the_longest_agreeing_prefix() -> None:
    target = torch.tensor([[5, 6, 7, 8], [5, 9, 7, 8], [1, 2, 3, 4]])  # [B, k+1]
    draft = torch.tensor([[5, 6, 7], [5, 6, 7], [1, 2, 3]])  # [B, k]
    num = torch.tensor([3, 3, 1])
    assert sampling.greedy_accept(target, draft, num).tolist() == [3, 1, 1]


def _spec_tokens(p: torch.Tensor, q: torch.Tensor, trials: int, seed: int) -> torch.Tensor:
    """Two tokens per trial from the accept/reject rule, drafts drawn from q -> [trials, 2]."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(trials, 2, dtype=torch.long)
    for t in range(trials):
        draft = [int(torch.multinomial(q[i], 1, generator=g)) for i in range(2)]
        acc, nxt = sampling.speculative_accept(p, q, draft, g)
        emitted = [*draft[:acc], nxt]
        out[t] = torch.tensor(emitted[:2] if len(emitted) >= 2 else [*emitted, -1])
    return out


def test_speculative_sampling_keeps_the_target_distribution() -> None:
    """On a 4-token vocabulary, the first emitted token follows p_0 and the second (when the
    first draft was accepted) follows p_1: chi-square goodness of fit, fixed seed."""
    stats = pytest.importorskip("scipy.stats")
    p = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.4, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])  # [k+1, V]
    q = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.1, 0.1, 0.4, 0.4]])  # [k, V]: a poor draft, many rejections
    trials = 6000
    toks = _spec_tokens(p, q, trials, seed=1234)

    def pvalue(counts: torch.Tensor, dist: torch.Tensor) -> float:
        expected = dist.double() / dist.double().sum() * counts.sum()
        return float(stats.chisquare(counts.numpy(), expected.numpy()).pvalue)

    first = torch.bincount(toks[:, 0], minlength=4).double()
    assert pvalue(first, p[0]) > 1e-3
    second = torch.bincount(toks[toks[:, 1] >= 0, 1], minlength=4).double()
    assert pvalue(second, p[1]) > 1e-3
    # and the test can fail: the draft's own distribution is rejected
    assert pvalue(first, q[0]) < 1e-6


def test_speculative_accept_with_a_perfect_draft_accepts_everything() -> None:
    p = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    acc, nxt = sampling.speculative_accept(p, p[:2], [1, 2], torch.Generator().manual_seed(0))
    assert (acc, nxt) == (2, 0)
    # a one-hot (prompt-lookup) draft the target gives no mass is always rejected
    one_hot = torch.tensor([[1.0, 0.0, 0.0]])
    acc, nxt = sampling.speculative_accept(p[:2], one_hot, [0], torch.Generator().manual_seed(0))
    assert (acc, nxt) == (0, 1)


def test_truncate_at_stop() -> None:
    kw = {"eos_token_ids": frozenset({2}), "max_model_len": 100}
    assert sampling.truncate_at_stop([5, 2, 7], generated_before=0, max_tokens=10, total_before=10, **kw) == (
        [5, 2],
        FinishKind.STOP,
    )
    assert sampling.truncate_at_stop([5, 6, 7], generated_before=8, max_tokens=10, total_before=10, **kw) == (
        [5, 6],
        FinishKind.LENGTH,
    )
    assert sampling.truncate_at_stop([5, 6, 7], generated_before=0, max_tokens=10, total_before=98, **kw) == (
        [5, 6],
        FinishKind.LENGTH,
    )
    assert sampling.truncate_at_stop([5, 6], generated_before=0, max_tokens=10, total_before=10, **kw) == (
        [5, 6],
        None,
    )


def test_ngram_proposals_follow_the_latest_match() -> None:
    tokens = [1, 2, 3, 4, 9, 1, 2, 3, 5, 6, 1, 2, 3]
    assert sampling.ngram_propose(tokens, 2) == [5, 6]  # the latest earlier "1 2 3" is followed by 5 6
    assert sampling.ngram_propose([1, 2, 3], 4) == []
    assert sampling.ngram_propose([7, 8, 7], 3) == [8, 7]  # unigram fallback


def test_ngram_search_matches_whole_tokens_only() -> None:
    # 256 and 1 share bytes with 65536 and 256 when packed; only token-aligned matches count
    assert sampling.ngram_propose([256, 65536, 7, 1, 256], 2) == [65536, 7]
    assert sampling.ngram_propose([65536, 1, 9, 256], 2) == []
    assert sampling.ngram_propose([5, 6, 5, 6, 5, 6], 3) == [5, 6]  # the latest match, overlapping the tail


def test_a_tiny_temperature_row_samples_greedily_and_spares_its_batchmates() -> None:
    """Issue 9 finding 7: T = 1e-40 overflows logits / T to NaN probabilities, and multinomial raised for
    the whole batch. The row gets its T -> 0 limit (one-hot at the argmax); the other row is untouched."""
    logits = torch.tensor([[0.1, 2.0, 0.3], [0.5, 0.2, 0.9]])  # [2, V]
    temps = torch.tensor([[1e-40], [1.0]])
    p = sampling.probs(logits, temps, torch.tensor([[1.0], [0.9]]))
    assert torch.isfinite(p).all()
    assert p[0].tolist() == [0.0, 1.0, 0.0]
    assert p[1].sum().item() == pytest.approx(1.0)
    g = torch.Generator().manual_seed(0)
    assert sampling.next_token(logits[0], SamplingParams(max_tokens=1, temperature=1e-40), g) == 1
