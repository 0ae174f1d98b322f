"""Sampling, speculative acceptance and stop checks: small pure functions.

Shapes in comments: B rows, V vocabulary, k draft tokens. Randomness comes only
from the `torch.Generator` passed in (one per request), so a seeded request
draws the same numbers whatever else is in the batch.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import torch

from worker.engine.api import FinishKind, SamplingParams


def greedy(logits: torch.Tensor) -> torch.Tensor:
    # logits: [..., V] -> [...] (ties go to the lowest id, as in torch.argmax)
    return logits.argmax(dim=-1)


MIN_DIVISOR_T = 1e-6  # logits up to ~3e32 stay finite divided by this


def probs(logits: torch.Tensor, temperature: float | torch.Tensor, top_p: float | torch.Tensor = 1.0) -> torch.Tensor:
    """The distribution a sampled request draws from: softmax(logits / T), cut to the top-p nucleus.

    logits: [..., V]; temperature, top_p: scalars, or tensors that broadcast against logits[..., :1]
    (one value per row). -> probs: [..., V] (float32, each row sums to 1)
    """
    # a tiny temperature (0 < T < ~1e-37 in float32) overflows logits / T to inf and softmax to NaN, which
    # multinomial refuses for the whole batch; at MIN_DIVISOR_T softmax is already one-hot at the argmax (the
    # T -> 0 limit) for any realistic logits, so clamping there changes no distribution and needs no host sync
    if isinstance(temperature, torch.Tensor):
        temperature = temperature.clamp(min=MIN_DIVISOR_T)
    else:
        temperature = max(float(temperature), MIN_DIVISOR_T)
    p = torch.softmax(logits.float() / temperature, dim=-1)
    if isinstance(top_p, float | int):
        if top_p >= 1.0:
            return p
        top_p = torch.tensor(float(top_p))
    if bool((top_p >= 1.0).all()):
        return p
    top_p = torch.where(top_p >= 1.0, torch.inf, top_p)  # no cut at all for rows without top-p
    sorted_p, order = p.sort(dim=-1, descending=True)  # [..., V]
    before = sorted_p.cumsum(dim=-1) - sorted_p  # mass strictly ahead of each token
    sorted_p = sorted_p.masked_fill(before >= top_p, 0.0)  # keeps at least the top token
    cut = torch.zeros_like(p).scatter_(-1, order, sorted_p)
    return cut / cut.sum(dim=-1, keepdim=True)


def row_params(params: Sequence[SamplingParams], ndim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row temperature and top-p shaped [B, 1, ...] to broadcast against logits of `ndim` dims."""
    shape = (len(params),) + (1,) * (ndim - 1)
    temps = torch.tensor([p.temperature for p in params], device=device).view(shape)
    top_ps = torch.tensor([p.top_p for p in params], device=device).view(shape)
    return temps, top_ps


def sample(p: torch.Tensor, generator: torch.Generator) -> int:
    # p: [V] -> one token id
    return int(torch.multinomial(p, 1, generator=generator))


def next_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    # logits: [V] -> one token id, greedy or sampled per the request's parameters
    if params.greedy:
        return int(greedy(logits))
    return sample(probs(logits, params.temperature, params.top_p), generator)


def greedy_accept(target_argmax: torch.Tensor, draft: torch.Tensor, num_draft: torch.Tensor) -> torch.Tensor:
    """Accepted draft tokens per row under greedy verification.

    target_argmax: [B, k+1] the target's greedy token after each prefix
    draft:         [B, k]   proposed tokens (padding beyond num_draft[b] is ignored)
    num_draft:     [B]      real draft tokens per row
    -> accepted:   [B]      the longest prefix where draft == target
    The token after the accepted prefix is target_argmax[b, accepted[b]].
    """
    k = draft.shape[1]
    valid = torch.arange(k, device=draft.device).unsqueeze(0) < num_draft.unsqueeze(1)  # [B, k]
    match = (draft == target_argmax[:, :k]) & valid  # [B, k]
    return match.long().cumprod(dim=1).sum(dim=1)  # [B]


def speculative_accept(
    p: torch.Tensor, q: torch.Tensor, draft: Sequence[int], generator: torch.Generator
) -> tuple[int, int]:
    """The standard accept/reject rule (Leviathan et al. 2023; Chen et al. 2023) for one row.

    p:     [n+1, V] the target's distribution after each prefix (the last one is the bonus position)
    q:     [n, V]   the distribution each draft token was drawn from (one-hot for prompt-lookup drafts)
    draft: n tokens
    -> (accepted, next_token): draft[:accepted] are kept, then next_token, which is drawn from
       norm(max(p_i - q_i, 0)) at the first rejection i, or from p_n when all n are accepted.
    The emitted tokens are distributed exactly as sampling from p one token at a time.
    """
    n = len(draft)
    if n:
        idx = torch.tensor(list(draft), device=p.device)  # [n]
        rows = torch.arange(n, device=p.device)
        p_d, q_d = p[rows, idx], q[rows, idx]  # [n], [n]
        u = torch.rand(n, generator=generator, device=p.device)  # one uniform per draft token, always all n
        ok = u * q_d < p_d  # u < p/q, without dividing by zero
        rejected = (~ok).nonzero()
        if len(rejected):
            i = int(rejected[0])
            residual = (p[i] - q[i]).clamp_min(0.0)  # [V]
            total = float(residual.sum())
            # p == q up to rounding: the rejection had probability ~0; fall back to p itself
            dist = residual / total if total > 1e-12 else p[i]
            return i, sample(dist, generator)
    return n, sample(p[n], generator)


def truncate_at_stop(
    tokens: Sequence[int],
    *,
    eos_token_ids: frozenset[int],
    generated_before: int,
    max_tokens: int,
    total_before: int,
    max_model_len: int,
) -> tuple[list[int], FinishKind | None]:
    """Cut a step's new tokens at the first stop condition.

    EOS -> STOP (the EOS token is kept, as the caller counts it); max_tokens or a full context -> LENGTH.
    total_before is prompt + generated tokens before this step.
    """
    out: list[int] = []
    for tok in tokens:
        out.append(tok)
        if tok in eos_token_ids:
            return out, FinishKind.STOP
        if generated_before + len(out) >= max_tokens or total_before + len(out) >= max_model_len:
            return out, FinishKind.LENGTH
    return out, None


def ngram_propose(tokens: Sequence[int], k: int, *, max_ngram: int = 3, min_ngram: int = 1) -> list[int]:
    """Prompt-lookup drafting: find the latest earlier occurrence of the last n tokens
    (longest n first) and propose the up to k tokens that followed it.

    The search runs in C (bytes.rfind over 4-byte token ids), so long sequences cost microseconds."""
    size = len(tokens)
    if size < 2 or k <= 0:
        return []
    data = array("I", tokens).tobytes()
    for n in range(min(max_ngram, size - 1), min_ngram - 1, -1):
        tail = data[4 * (size - n) :]
        limit = 4 * (size - 1)  # a match must end before the last token, so something follows it
        while (at := data.rfind(tail, 0, limit)) >= 0:
            if at % 4 == 0:  # aligned on a token, not straddling two
                start = at // 4 + n
                return list(tokens[start : start + k])
            limit = at + 4 * n - 1  # look again for a match that starts before this misaligned one
    return []
