"""The model runner: torch only. Prefill, decode and (in speculative.py) draft-and-verify.

Sequences live in rows of slot KV caches (kv_cache.py). Rows [0, n_decode) hold
sequences that decode; rows [n_decode, n_rows) hold sequences whose prompt is
being prefilled. Each forward pass runs over one of these contiguous ranges
with per-row lengths, right-padded queries and an exact mask, so a row's
result does not depend on the other rows (up to float rounding in batched
matmuls).
"""

from __future__ import annotations

import time
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
import torch

from worker.engine import sampling
from worker.engine.api import SamplingParams
from worker.engine.fast_path import LlamaFastPath
from worker.engine.kv_cache import SlotKVCache, attention_mask

if TYPE_CHECKING:
    from worker.engine.cuda_graphs import DecodeGraphs

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Sequence:
    """The runner's state of one request."""

    request_id: str
    params: SamplingParams
    generator: torch.Generator
    tokens: list[int]  # prompt + generated
    prompt_len: int
    may_speculate: bool = True
    row: int = -1
    kv_len: int = 0  # positions with target KV; while decoding == len(tokens) - 1
    draft_len: int = 0  # positions with draft KV
    draft_tokens: int = 0  # cumulative: proposed and verified
    accepted_tokens: int = 0
    prefill_s: float = 0.0


@dataclass(frozen=True, slots=True)
class PrefillWork:
    seq: Sequence
    start: int
    length: int
    last: bool


def model_dims(config: Any) -> tuple[int, int, int]:
    """(layers, kv heads, head dim) of a decoder-only HF config."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim


def new_cache(model: Any, rows: int, dtype: torch.dtype, device: torch.device) -> SlotKVCache:
    layers, kv_heads, head_dim = model_dims(model.config)
    return SlotKVCache(
        num_layers=layers, kv_heads=kv_heads, head_dim=head_dim, rows_cap=rows, dtype=dtype, device=device
    )


class Forward:
    """One model with its slot cache: a batched forward over a row range."""

    def __init__(self, model: Any, cache: SlotKVCache, device: torch.device, *, fast: bool = True) -> None:
        self.model, self.cache, self.device = model, cache, device
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()
        self.fast = LlamaFastPath(model) if fast and LlamaFastPath.supports(model) else None

    @torch.inference_mode()
    def hidden(self, start: int, tokens: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """tokens: [B, q] (right-padded), lens: [B] tokens already in each row's cache -> hidden [B, q, H]."""
        q = tokens.shape[1]
        self.cache.begin(start, lens, q)
        mask = attention_mask(lens, q, self.cache.kv_len)  # [B, 1, q, kv]
        positions = lens.unsqueeze(1) + torch.arange(q, device=self.device)  # [B, q]
        if self.fast is not None:
            return self.fast(tokens, positions, mask, self.cache)
        out = self.decoder(
            input_ids=tokens,
            position_ids=positions,
            attention_mask=mask,
            cache=self.cache,
            use_cache=True,
        )
        return out.last_hidden_state  # type: ignore[no-any-return]

    @torch.inference_mode()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden).float()  # type: ignore[no-any-return]


@dataclass(slots=True)
class Rows:
    """Which sequence is in which row; keeps rows compact and both caches in step."""

    caches: list[SlotKVCache]
    seqs: list[Sequence] = field(default_factory=list)
    n_decode: int = 0

    def add(self, seq: Sequence) -> None:
        seq.row = len(self.seqs)
        self.seqs.append(seq)
        for cache in self.caches:  # every cache has the row, even one no forward has touched yet
            cache.reserve(len(self.seqs), 0)

    def promote(self, seq: Sequence) -> None:
        """Move a prefilled sequence to the end of the decode region."""
        self._swap(seq.row, self.n_decode)
        self.n_decode += 1

    def remove(self, seq: Sequence) -> None:
        row = seq.row
        if row < self.n_decode:
            self._swap(row, self.n_decode - 1)
            self.n_decode -= 1
            row = self.n_decode
        self._swap(row, len(self.seqs) - 1)
        self.seqs.pop()
        seq.row = -1

    def _swap(self, a: int, b: int) -> None:
        if a == b:
            return
        sa, sb = self.seqs[a], self.seqs[b]
        for i, cache in enumerate(self.caches):
            length = max(sa.kv_len, sb.kv_len) if i == 0 else max(sa.draft_len, sb.draft_len)
            cache.swap_rows(a, b, length)
        self.seqs[a], self.seqs[b] = sb, sa
        sa.row, sb.row = b, a


class ModelRunner:
    """Prefill and decode for the rows of a batch; speculation lives in `speculative.Speculator`."""

    def __init__(
        self, model: Any, *, max_rows: int, device: torch.device, dtype: torch.dtype, decode_graphs: str = "off"
    ) -> None:
        self.device = device
        self.target = Forward(model, new_cache(model, max_rows, dtype, device), device)
        self.rows = Rows([self.target.cache])
        self.draft: Forward | None = None
        self.graphs: DecodeGraphs | None = None
        if decode_graphs != "off":  # the plain decode step as CUDA graphs (cuda_graphs.py); off by default
            from worker.engine.cuda_graphs import DecodeGraphs, GraphMode, unusable

            mode = GraphMode(decode_graphs)
            why = unusable(model, self.target, mode)
            if why is None:
                self.graphs = DecodeGraphs(self.target, mode)
            else:
                log.info("engine.decode_graphs_off", reason=why)

    def attach_draft(self, draft: Forward) -> None:
        """A draft model whose cache rows mirror the target's (speculative.DraftModelProposer)."""
        self.draft = draft
        self.rows.caches.append(draft.cache)

    @property
    def kv_cache_bytes(self) -> int:
        return sum(c.nbytes for c in self.rows.caches)

    def add(self, seq: Sequence) -> None:
        self.rows.add(seq)

    def remove(self, seq: Sequence) -> None:
        self.rows.remove(seq)
        rows = len(self.rows.seqs)
        longest = max((s.kv_len for s in self.rows.seqs), default=0)
        for cache in self.rows.caches:
            cache.shrink(rows, longest + 1)

    def decoding(self) -> list[Sequence]:
        return self.rows.seqs[: self.rows.n_decode]

    def _lens(self, seqs: Seq[Sequence]) -> torch.Tensor:
        return torch.tensor([s.kv_len for s in seqs], dtype=torch.long, device=self.device)

    # -- prefill --------------------------------------------------------------------------------------

    def prefill(self, work: list[PrefillWork], *, with_draft: bool = False) -> dict[str, int]:
        """Run prompt chunks for the prefill rows; returns the first token of each completed prompt.

        with_draft: prefill the draft model on the same chunks (when speculation is about to run), so it
        need not catch up on whole prompts later; rows it has fallen behind on are left to that catch-up.
        """
        if not work:
            return {}
        t0 = time.perf_counter()
        by_row = {w.seq.row: w for w in work}
        start, stop = self.rows.n_decode, len(self.rows.seqs)
        rows = self.rows.seqs[start:stop]
        q = max(w.length for w in work)
        tokens = torch.zeros(len(rows), q, dtype=torch.long)
        for i, seq in enumerate(rows):
            w = by_row.get(seq.row)
            if w is not None:
                tokens[i, : w.length] = torch.tensor(seq.tokens[w.start : w.start + w.length])
        tokens = tokens.to(self.device)
        hidden = self.target.hidden(start, tokens, self._lens(rows))  # [R, q, H]
        in_step = [by_row.get(s.row) for s in rows]
        if with_draft and self.draft is not None and all(w is None or w.seq.draft_len == w.start for w in in_step):
            draft_lens = torch.tensor([s.draft_len for s in rows], dtype=torch.long, device=self.device)
            self.draft.hidden(start, tokens, draft_lens)  # keys and values only: no logits needed
            for w in work:
                w.seq.draft_len = w.start + w.length
        done = [(i, by_row[s.row]) for i, s in enumerate(rows) if s.row in by_row and by_row[s.row].last]
        first: dict[str, int] = {}
        if done:
            idx = torch.tensor([i for i, _ in done], device=self.device)
            pos = torch.tensor([w.length - 1 for _, w in done], device=self.device)
            logits = self.target.logits(hidden[idx, pos])  # [D, V]
            for (_, w), row_logits in zip(done, logits, strict=True):
                first[w.seq.request_id] = sampling.next_token(row_logits, w.seq.params, w.seq.generator)
        elapsed = time.perf_counter() - t0
        for w in work:
            w.seq.kv_len = w.start + w.length
            w.seq.prefill_s += elapsed
        for _, w in done:
            w.seq.tokens.append(first[w.seq.request_id])
            self.rows.promote(w.seq)
        return first

    # -- decode ---------------------------------------------------------------------------------------

    def decode(self) -> dict[str, list[int]]:
        """One token for every decoding row."""
        seqs = self.decoding()
        if not seqs:
            return {}
        logits = None
        if self.graphs is not None and self.graphs.active:
            longest = max(s.kv_len for s in self.rows.seqs)
            logits = self.graphs.logits([s.tokens[-1] for s in seqs], [s.kv_len for s in seqs], longest)
        if logits is None:
            last = torch.tensor([[s.tokens[-1]] for s in seqs], dtype=torch.long, device=self.device)  # [B, 1]
            hidden = self.target.hidden(0, last, self._lens(seqs))
            logits = self.target.logits(hidden[:, 0])  # [B, V]
        new = self.choose(seqs, logits)
        out: dict[str, list[int]] = {}
        for seq, tok in zip(seqs, new, strict=True):
            seq.kv_len += 1
            seq.tokens.append(tok)
            out[seq.request_id] = [tok]
        return out

    @staticmethod
    def choose(seqs: Seq[Sequence], logits: torch.Tensor) -> list[int]:
        """logits: [B, V] -> one token per row: argmax for greedy rows, per-row generators else."""
        picks: list[int] = sampling.greedy(logits).tolist()
        sampled = [i for i, s in enumerate(seqs) if not s.params.greedy]
        if sampled:
            temps, top_ps = sampling.row_params([seqs[i].params for i in sampled], 2, logits.device)
            dists = sampling.probs(logits[sampled], temps, top_ps)  # [S, V]
            for i, dist in zip(sampled, dists, strict=True):
                picks[i] = sampling.sample(dist, seqs[i].generator)
        return picks
