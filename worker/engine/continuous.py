"""The continuous-batching engine: the scheduler decides, the runner computes.

`add_request` and `abort_request` only enqueue under a lock (the Kafka loop
calls them from its thread); `step()` runs in one worker thread: drain the
queues, let the scheduler pick this step's work, run decode (speculative while
the load is small) and the prefill chunk, then turn tokens into StepOutputs
with stop checks.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass

import structlog
import torch

from worker.engine import sampling
from worker.engine.api import EngineRequest, EngineStats, FinishKind, StepOutput, check_prompt_len
from worker.engine.runner import ModelRunner, PrefillWork, Sequence
from worker.engine.scheduler import Scheduler, SchedulerConfig
from worker.engine.speculative import DraftModelProposer, HybridProposer, NgramProposer, Proposer, Speculator
from worker.loader import ModelBundle

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_running: int = 32
    max_batch_tokens: int = 8192
    prefill_chunk_tokens: int = 256
    num_speculative_tokens: int = 4
    spec_max_batch_size: int = 4  # speculate while at most this many sequences run or wait; 0 disables
    ngram_speculation: bool = False  # prompt lookup: alone, or first with the draft model for the rest
    ngram_min: int = 2  # shortest n-gram match that proposes (single-token matches guess poorly)
    spec_min_draft_prob: float = 0.0  # stop drafting a row once the draft's confidence drops below this
    seed: int | None = None  # for requests without a seed; None: fresh entropy
    decode_graphs: str = "off"  # "capture": plain decode steps as CUDA graphs; "static": their shapes, eager


@dataclass(slots=True)
class _Req:
    request: EngineRequest
    seq: Sequence


class ContinuousEngine:
    simulated = False

    def __init__(self, bundle: ModelBundle, config: EngineConfig) -> None:
        self.bundle, self.config = bundle, config
        self.max_model_len = bundle.max_model_len
        self._runner = ModelRunner(
            bundle.model,
            max_rows=config.max_running,
            device=bundle.device,
            dtype=bundle.kv_dtype,
            decode_graphs=config.decode_graphs,
        )
        self._spec: Speculator | None = None
        enabled = config.num_speculative_tokens > 0 and config.spec_max_batch_size > 0
        proposer = self._proposer(bundle, config) if enabled else None
        if proposer is not None:
            self._spec = Speculator(
                self._runner,
                proposer,
                num_tokens=config.num_speculative_tokens,
                max_model_len=self.max_model_len,
            )
        self._sched = Scheduler(
            SchedulerConfig(
                max_running=config.max_running,
                max_batch_tokens=config.max_batch_tokens,
                prefill_chunk_tokens=config.prefill_chunk_tokens,
                max_model_len=self.max_model_len,
                spec_max_batch_size=config.spec_max_batch_size if self._spec else 0,
            )
        )
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()
        self._inbox: deque[EngineRequest] = deque()
        self._aborts: dict[str, FinishKind] = {}
        self._reqs: dict[str, _Req] = {}
        self._steps = self._spec_steps = 0
        self._preempted = 0  # batch rows preempted for interactive requests
        self._last_step_ms = 0.0
        log.info(
            "engine.start",
            weights_bytes=bundle.weights_bytes,
            draft_weights_bytes=bundle.draft_weights_bytes,
            kv_bytes_per_token=self.kv_bytes_per_token,
            kv_budget_bytes=config.max_batch_tokens * self.kv_bytes_per_token,
            max_running=config.max_running,
            max_batch_tokens=config.max_batch_tokens,
            speculation=type(proposer).__name__ if self._spec else None,
            device=str(bundle.device),
        )

    def _proposer(self, bundle: ModelBundle, config: EngineConfig) -> Proposer | None:
        """Prompt lookup, the draft model, or both (lookup first, the draft model where it finds nothing)."""
        lookup = (
            NgramProposer(bundle.vocab_size, bundle.device, min_ngram=config.ngram_min)
            if config.ngram_speculation
            else None
        )
        if bundle.draft is None:
            return lookup
        draft = DraftModelProposer(
            bundle.draft,
            self._runner,
            max_rows=config.max_running,
            vocab_size=bundle.vocab_size,
            dtype=bundle.kv_dtype,
            min_prob=config.spec_min_draft_prob,
        )
        return HybridProposer(draft, lookup) if lookup is not None else draft

    @property
    def kv_bytes_per_token(self) -> int:
        """Target and draft KV bytes per position of a row."""
        return sum(c.bytes_per_token for c in self._runner.rows.caches)

    # -- the thread-safe side -------------------------------------------------------------------------

    def add_request(self, request: EngineRequest) -> None:
        n = len(request.prompt_token_ids)
        check_prompt_len(n, self.max_model_len)
        with self._lock:
            self._inbox.append(request)

    def abort_request(self, request_id: str, reason: FinishKind) -> None:
        with self._lock:
            self._aborts[request_id] = reason

    def has_unfinished(self) -> bool:
        with self._lock:
            return bool(self._inbox or self._aborts or self._sched.has_unfinished())

    def stats(self) -> EngineStats:
        with self._lock:
            inbox = len(self._inbox)
        return EngineStats(
            running=self._sched.num_running,
            waiting=self._sched.num_waiting + inbox,
            max_running=self.config.max_running,
            weights_bytes=self.bundle.weights_bytes + self.bundle.draft_weights_bytes,
            kv_cache_bytes=self._runner.kv_cache_bytes,
            kv_budget_bytes=self.config.max_batch_tokens * self.kv_bytes_per_token,
            spec_draft_tokens=self._spec.draft_total if self._spec else 0,
            spec_accepted_tokens=self._spec.accepted_total if self._spec else 0,
            extra={
                "kv_reserved_tokens": float(self._sched.reserved_tokens),
                "steps": float(self._steps),
                "spec_steps": float(self._spec_steps),
                "preempted": float(self._preempted),
                "last_step_ms": self._last_step_ms,
                **self._graph_stats(),
            },
        )

    def _graph_stats(self) -> dict[str, float]:
        g = self._runner.graphs
        if g is None:
            return {}
        return {
            "graph_captures": float(g.captures),
            "graph_replays": float(g.replays),
            "graph_failed": float(not g.active),
        }

    def close(self) -> None:
        with self._lock:
            self._inbox.clear()
            self._aborts.clear()

    # -- the step -------------------------------------------------------------------------------------

    def step(self) -> list[StepOutput]:
        t0 = time.perf_counter()
        with self._lock:
            inbox, self._inbox = self._inbox, deque()
            aborts, self._aborts = self._aborts, {}
        out: list[StepOutput] = []
        for req in inbox:
            if req.params.max_tokens <= 0:  # nothing to generate: done at once
                out.append(StepOutput(req.request_id, [], FinishKind.LENGTH, len(req.prompt_token_ids)))
                continue
            self._admit(req)
        for rid, reason in aborts.items():
            if rid in self._reqs:
                out.append(self._finish(rid, [], reason))
        plan = self._sched.schedule(time.time())
        for rid in plan.expired:
            out.append(self._finish(rid, [], FinishKind.EXPIRED, scheduled=False))
        for rid in plan.preempted:  # batch rows yielding to an interactive request: KV freed, tokens kept
            seq = self._reqs[rid].seq
            self._runner.remove(seq)
            seq.kv_len = seq.draft_len = 0  # readmitted, it prefills prompt + generated again
            self._preempted += 1
        for rid in plan.admitted:
            self._runner.add(self._reqs[rid].seq)

        new_tokens: dict[str, list[int]] = {}
        if plan.decode:
            spec = None
            if plan.speculate and self._spec is not None:
                spec = self._spec.step({rid: self._reqs[rid].request.params.max_tokens for rid in plan.decode})
                self._spec_steps += spec is not None
            new_tokens = spec if spec is not None else self._runner.decode()
        work = [PrefillWork(self._reqs[c.request_id].seq, c.start, c.length, c.last) for c in plan.prefill]
        first = self._runner.prefill(work, with_draft=plan.prefill_draft)
        for c in plan.prefill:
            self._sched.on_prefilled(c)
        prefilled = set(first)
        new_tokens.update({rid: [tok] for rid, tok in first.items()})

        for rid, toks in new_tokens.items():
            out.append(self._emit(rid, toks, rid in prefilled))
        self._steps += 1
        self._last_step_ms = (time.perf_counter() - t0) * 1000
        return out

    def _admit(self, req: EngineRequest) -> None:
        seed = req.params.seed if req.params.seed is not None else self._rng.getrandbits(63)
        gen = torch.Generator(device=self.bundle.device).manual_seed(seed)
        seeded_sampled = req.params.seed is not None and not req.params.greedy
        seq = Sequence(
            req.request_id,
            req.params,
            gen,
            list(req.prompt_token_ids),
            len(req.prompt_token_ids),
            may_speculate=not seeded_sampled,
        )
        self._reqs[req.request_id] = _Req(req, seq)
        self._sched.add(
            req.request_id,
            seq.prompt_len,
            req.params.max_tokens,
            arrival_s=req.arrival_s,
            deadline_s=req.deadline_s,
            priority=req.priority,
        )

    def _emit(self, rid: str, toks: list[int], prefilled: bool) -> StepOutput:
        r = self._reqs[rid]
        seq, params = r.seq, r.request.params
        generated_before = len(seq.tokens) - len(toks) - seq.prompt_len
        kept, finished = sampling.truncate_at_stop(
            toks,
            eos_token_ids=self.bundle.eos_token_ids,
            generated_before=generated_before,
            max_tokens=params.max_tokens,
            total_before=seq.prompt_len + generated_before,
            max_model_len=self.max_model_len,
        )
        self._sched.on_generated(rid, len(kept))
        if finished is not None:
            return self._finish(rid, kept, finished, prefilled=prefilled)
        return self._output(r, kept, None, prefilled)

    def _output(self, r: _Req, toks: list[int], finished: FinishKind | None, prefilled: bool) -> StepOutput:
        seq = r.seq
        return StepOutput(
            seq.request_id,
            toks,
            finished,
            seq.prompt_len,
            spec_draft_tokens=seq.draft_tokens,
            spec_accepted_tokens=seq.accepted_tokens,
            prefill_ms=seq.prefill_s * 1000 if prefilled else 0.0,
        )

    def _finish(
        self,
        rid: str,
        toks: list[int],
        reason: FinishKind,
        *,
        scheduled: bool = True,
        prefilled: bool = False,
    ) -> StepOutput:
        r = self._reqs.pop(rid)
        if scheduled:
            self._sched.finish(rid)
        if r.seq.row >= 0:
            self._runner.remove(r.seq)
        return self._output(r, toks, reason, prefilled)
