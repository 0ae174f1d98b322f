"""Speculative decoding: propose k tokens cheaply, verify them in one target pass.

Two proposers: a draft model (its own slot KV cache, rows mirroring the
target's, caught up lazily so steps without speculation cost it nothing) and
prompt lookup (n-gram matches in the sequence itself, no model). Verification
is greedy (accept the longest prefix the target agrees with: output identical
to plain greedy decoding) or the standard accept/reject rule for sampled
requests (output distributed as the target's). Seeded sampled requests are
verified with zero draft tokens, so they draw exactly what plain decoding
draws and stay reproducible whatever the load.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Any, Protocol

import torch

from worker.engine import sampling
from worker.engine.runner import Forward, ModelRunner, Sequence, new_cache


class Proposer(Protocol):
    def propose(self, seqs: Seq[Sequence], ks: list[int]) -> tuple[list[list[int]], list[torch.Tensor | None]]:
        """Up to ks[b] tokens per row, and for sampled rows the distributions they came from [n, V]."""
        ...

    def accepted(self, seq: Sequence, old_len: int, accepted: int) -> None:
        """Told after verification: seq.tokens had old_len tokens, `accepted` drafts were kept."""
        ...


class DraftModelProposer:
    """Proposals from a small model. Drafting stops early for a row once the draft's own probability
    of its next proposal falls below `min_prob` (after the first token), which saves draft passes and
    verification positions that would most likely be rejected."""

    def __init__(
        self,
        draft: Any,
        runner: ModelRunner,
        *,
        max_rows: int,
        vocab_size: int,
        dtype: torch.dtype,
        min_prob: float = 0.0,
    ):
        self.device = runner.device
        self.fwd = Forward(draft, new_cache(draft, max_rows, dtype, self.device), self.device)
        self.vocab_size, self.min_prob = vocab_size, min_prob
        self._fed = 0  # proposals of the last call whose keys and values the draft cache holds
        runner.attach_draft(self.fwd)

    def _fit(self, logits: torch.Tensor) -> torch.Tensor:
        # draft logits [..., V'] -> [..., V] of the target's vocabulary (extra ids can never be proposed)
        v = logits.shape[-1]
        if v == self.vocab_size:
            return logits
        if v > self.vocab_size:
            return logits[..., : self.vocab_size]
        pad = logits.new_full((*logits.shape[:-1], self.vocab_size - v), float("-inf"))
        return torch.cat([logits, pad], dim=-1)

    def _catch_up(self, seqs: Seq[Sequence]) -> torch.Tensor:
        """Feed every row the tokens the draft has not seen (>= 1 each) -> logits [B, V] after the last."""
        pending = [s.tokens[s.draft_len :] for s in seqs]
        tokens = torch.zeros(len(seqs), max(len(p) for p in pending), dtype=torch.long)
        for i, p in enumerate(pending):
            tokens[i, : len(p)] = torch.tensor(p)
        lens = torch.tensor([s.draft_len for s in seqs], dtype=torch.long, device=self.device)
        hidden = self.fwd.hidden(0, tokens.to(self.device), lens)  # [B, q, H]
        last = torch.tensor([len(p) - 1 for p in pending], device=self.device)
        for s, p in zip(seqs, pending, strict=True):
            s.draft_len += len(p)
        return self._fit(self.fwd.logits(hidden[torch.arange(len(seqs), device=self.device), last]))

    def propose(self, seqs: Seq[Sequence], ks: list[int]) -> tuple[list[list[int]], list[torch.Tensor | None]]:
        ks = list(ks)
        logits = self._catch_up(seqs)  # [B, V]
        drafts: list[list[int]] = [[] for _ in seqs]
        dists: list[list[torch.Tensor]] = [[] for _ in seqs]
        sampled = [b for b, s in enumerate(seqs) if not s.params.greedy]
        if sampled:
            temps, top_ps = sampling.row_params([seqs[b].params for b in sampled], 2, self.device)
        self._fed = 0
        i = 0
        while True:
            conf = torch.softmax(logits.float(), dim=-1).amax(dim=-1).tolist() if self.min_prob and i else None
            if conf is not None:
                ks = [i if k > i and c < self.min_prob else k for k, c in zip(ks, conf, strict=True)]
            if i >= max(ks):
                break
            picks: list[int] = sampling.greedy(logits).tolist()  # [B]
            if sampled:
                step_dists = sampling.probs(logits[sampled], temps, top_ps)  # [S, V]
                for b, dist in zip(sampled, step_dists, strict=True):
                    dists[b].append(dist)
                    if i < ks[b]:
                        picks[b] = sampling.sample(dist, seqs[b].generator)
            for b in range(len(seqs)):
                drafts[b].append(picks[b])
            i += 1
            if i >= max(ks):
                break
            col = torch.tensor(picks, dtype=torch.long, device=self.device).unsqueeze(1)  # [B, 1]
            lens = torch.tensor([s.draft_len for s in seqs], dtype=torch.long, device=self.device)
            logits = self._fit(self.fwd.logits(self.fwd.hidden(0, col, lens)[:, 0]))
            for s in seqs:
                s.draft_len += 1
            self._fed += 1
        out_q: list[torch.Tensor | None] = [
            None if s.params.greedy or not ks[b] else torch.stack(dists[b][: ks[b]]) for b, s in enumerate(seqs)
        ]
        return [d[: ks[b]] for b, d in enumerate(drafts)], out_q

    def accepted(self, seq: Sequence, old_len: int, accepted: int) -> None:
        # the draft cache holds the old tokens and the first `_fed` proposals; keep what was accepted
        seq.draft_len = old_len + min(accepted, self._fed)


class NgramProposer:
    """Prompt lookup: proposals copied from where the sequence's last n tokens occurred before."""

    def __init__(self, vocab_size: int, device: torch.device, *, max_ngram: int = 3, min_ngram: int = 1) -> None:
        self.vocab_size, self.device = vocab_size, device
        self.max_ngram, self.min_ngram = max_ngram, min_ngram

    def propose(self, seqs: Seq[Sequence], ks: list[int]) -> tuple[list[list[int]], list[torch.Tensor | None]]:
        drafts = [
            sampling.ngram_propose(s.tokens, k, max_ngram=self.max_ngram, min_ngram=self.min_ngram) if k else []
            for s, k in zip(seqs, ks, strict=True)
        ]
        dists: list[torch.Tensor | None] = []
        for s, d in zip(seqs, drafts, strict=True):
            if s.params.greedy or not d:
                dists.append(None)
                continue
            one_hot = torch.zeros(len(d), self.vocab_size, device=self.device)  # a point mass on each proposal
            one_hot[torch.arange(len(d)), torch.tensor(d)] = 1.0
            dists.append(one_hot)
        return drafts, dists

    def accepted(self, seq: Sequence, old_len: int, accepted: int) -> None:
        pass


class HybridProposer:
    """Prompt lookup first (free: no model pass), the draft model for the rows where it finds nothing.

    Code and chat continuations often repeat what is already in the sequence; there a lookup proposes
    long runs the target accepts, and the draft model covers the rest."""

    def __init__(self, draft: DraftModelProposer, lookup: NgramProposer) -> None:
        self.draft, self.lookup = draft, lookup
        self._looked_up: set[str] = set()  # rows whose proposals came from the lookup this round
        self._draft_ran = False

    def propose(self, seqs: Seq[Sequence], ks: list[int]) -> tuple[list[list[int]], list[torch.Tensor | None]]:
        drafts, dists = self.lookup.propose(seqs, ks)
        self._looked_up = {s.request_id for s, d in zip(seqs, drafts, strict=True) if d}
        need = [0 if d else k for d, k in zip(drafts, ks, strict=True)]
        self._draft_ran = any(need)
        if self._draft_ran:
            model_drafts, model_dists = self.draft.propose(seqs, need)
            for b, k in enumerate(need):
                if k:
                    drafts[b], dists[b] = model_drafts[b], model_dists[b]
        return drafts, dists

    def accepted(self, seq: Sequence, old_len: int, accepted: int) -> None:
        if not self._draft_ran:
            return  # the draft saw nothing new: it catches up when next needed
        if seq.request_id in self._looked_up:
            seq.draft_len = min(seq.draft_len, old_len)  # it was fed its own picks, not the accepted tokens
        else:
            self.draft.accepted(seq, old_len, accepted)


class Speculator:
    """Draft-and-verify for the decoding rows of a ModelRunner."""

    def __init__(self, runner: ModelRunner, proposer: Proposer, *, num_tokens: int, max_model_len: int) -> None:
        self.runner, self.proposer = runner, proposer
        self.num_tokens, self.max_model_len = num_tokens, max_model_len
        self.draft_total = self.accepted_total = 0  # over the engine's life

    def budget(self, seq: Sequence, max_tokens: int) -> int:
        """Draft tokens worth proposing: none past what the request may still emit."""
        if not seq.may_speculate:
            return 0
        left = min(max_tokens - (len(seq.tokens) - seq.prompt_len), self.max_model_len - len(seq.tokens))
        return max(0, min(self.num_tokens, left - 1))

    def step(self, max_tokens: dict[str, int]) -> dict[str, list[int]] | None:
        """One speculative step for all decoding rows; None when nothing was worth proposing."""
        seqs = self.runner.decoding()
        ks = [self.budget(s, max_tokens[s.request_id]) for s in seqs]
        if not seqs or max(ks) == 0:
            return None
        drafts, dists = self.proposer.propose(seqs, ks)
        kmax = max(len(d) for d in drafts)
        if kmax == 0:
            return None
        return self._verify(seqs, drafts, dists, kmax)

    def _verify(
        self, seqs: list[Sequence], drafts: list[list[int]], dists: list[torch.Tensor | None], kmax: int
    ) -> dict[str, list[int]]:
        device, b = self.runner.device, len(seqs)
        inp = torch.zeros(b, kmax + 1, dtype=torch.long)  # [B, k+1]: the last token, then the drafts
        for i, (s, d) in enumerate(zip(seqs, drafts, strict=True)):
            inp[i, 0] = s.tokens[-1]
            inp[i, 1 : 1 + len(d)] = torch.tensor(d, dtype=torch.long)
        inp = inp.to(device)
        lens = torch.tensor([s.kv_len for s in seqs], dtype=torch.long, device=device)
        target = self.runner.target
        logits = target.logits(target.hidden(0, inp, lens))  # [B, k+1, V]
        num_draft = torch.tensor([len(d) for d in drafts], device=device)
        tgt = sampling.greedy(logits)  # [B, k+1]
        acc_greedy = sampling.greedy_accept(tgt, inp[:, 1:], num_draft).tolist()
        tgt_list = tgt.tolist()
        sampled = [i for i, s in enumerate(seqs) if not s.params.greedy]
        target_dists: dict[int, torch.Tensor] = {}
        if sampled:
            temps, top_ps = sampling.row_params([seqs[i].params for i in sampled], 3, device)
            target_dists = dict(zip(sampled, sampling.probs(logits[sampled], temps, top_ps), strict=True))
        out: dict[str, list[int]] = {}
        for i, (s, d) in enumerate(zip(seqs, drafts, strict=True)):
            if s.params.greedy:
                acc = int(acc_greedy[i])
                nxt = int(tgt_list[i][acc])
            else:
                p = target_dists[i][: len(d) + 1]  # [n+1, V]
                q = dists[i]
                acc, nxt = sampling.speculative_accept(p, q if q is not None else p[:0], d, s.generator)
            old_len = len(s.tokens)
            new = [*d[:acc], nxt]
            s.tokens.extend(new)
            s.kv_len += 1 + acc
            s.draft_tokens += len(d)
            s.accepted_tokens += acc
            self.draft_total += len(d)
            self.accepted_total += acc
            self.proposer.accepted(s, old_len, acc)
            out[s.request_id] = new
        return out
