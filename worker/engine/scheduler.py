"""The scheduler: which requests run this step. Pure Python: no torch, no Kafka.

Policy (iteration-level, like vLLM v1):
- Every running sequence whose prompt is done decodes every step, so decode never
  starves behind prefill.
- Prefill is chunked: each step prefills at most `prefill_chunk_tokens` prompt
  tokens, continuing started prompts first, then admitting waiting requests in
  arrival order. A step therefore costs at most one decode pass plus one bounded
  prefill chunk, which bounds how much a long prompt can add to the others' TPOT.
- Admission is strict FIFO within a priority class (no request is overtaken by
  one of its class, so a large one cannot be starved by a stream of small ones);
  an interactive request waits ahead of every batch one. Admission needs a free slot (`max_running`) and
  room in the KV budget. Each sequence reserves prompt + max_tokens (capped by
  the context length); the slot KV cache gives every row the length of the
  longest, so the budget counts what it really allocates: running sequences x
  the longest reservation <= `max_batch_tokens`, so KV memory stays within the budget.
- Batch rows yield to interactive requests: when the interactive request at the head of the queue finds no
  slot or no KV room, and letting running batch rows go would make room, the most recently admitted batch rows
  are preempted (newest first, only as many as needed). A preempted row loses its KV, not its tokens: it waits
  at the front of the batch class and, readmitted, prefills its prompt and what it had generated, then goes on
  (greedy output is the same). Interactive rows are never preempted.
- A waiting request is admitted within one step of a slot and budget being free;
  cancellation and deadlines free the slot at the start of the next step.
- Speculation runs only while the load is small: at most `spec_max_batch_size`
  sequences running and waiting together. It pays for itself when the model is
  memory- or overhead-bound, and costs throughput when the batch already fills
  the machine; counting the waiting ones too keeps a speculative step (a few
  draft passes longer than a plain one) from delaying a queue of new requests.
  Under that load, prompts joining a decoding batch are prefilled into the draft
  model too.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


def insert_waiting(waiting: deque[T], item: T, priority: Callable[[T], int]) -> None:
    """Queue `item` after every waiting item of its class or an earlier one, ahead of later classes."""
    p = priority(item)
    if not waiting or priority(waiting[-1]) <= p:
        waiting.append(item)
        return
    for i, other in enumerate(waiting):
        if priority(other) > p:
            waiting.insert(i, item)
            return


class Phase(enum.Enum):
    WAITING = "waiting"
    PREFILL = "prefill"  # admitted, prompt partly computed
    DECODE = "decode"


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    max_running: int = 32
    max_batch_tokens: int = 8192  # KV budget: running sequences x the longest reservation
    prefill_chunk_tokens: int = 256  # prompt tokens prefilled per step, over all sequences
    max_model_len: int = 2048
    spec_max_batch_size: int = 4  # speculate only while at most this many sequences decode (0: never)


@dataclass(slots=True)
class SeqStatus:
    request_id: str
    prompt_len: int
    max_tokens: int
    arrival_s: float = 0.0
    deadline_s: float | None = None
    phase: Phase = Phase.WAITING
    computed: int = 0  # prompt tokens whose KV exists
    generated: int = 0
    reserved: int = 0  # tokens held against the KV budget while running
    max_model_len: int = 1 << 62
    priority: int = 0  # 0 interactive, 1 batch

    @property
    def demand(self) -> int:
        """Tokens this sequence can ever hold: prompt + max_tokens, capped by the context length."""
        return min(self.prompt_len + self.max_tokens, self.max_model_len)


@dataclass(frozen=True, slots=True)
class PrefillChunk:
    request_id: str
    start: int  # first prompt position of the chunk
    length: int
    last: bool  # the chunk completes the prompt: the step samples the first token


@dataclass(slots=True)
class Schedule:
    prefill: list[PrefillChunk] = field(default_factory=list)
    decode: list[str] = field(default_factory=list)
    admitted: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    preempted: list[str] = field(default_factory=list)  # batch rows sent back to waiting, their KV to be freed
    speculate: bool = False
    prefill_draft: bool = False  # speculation will likely run next: prefill the draft model too

    @property
    def empty(self) -> bool:
        return not (self.prefill or self.decode)


class Scheduler:
    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self._waiting: deque[SeqStatus] = deque()
        self._running: dict[str, SeqStatus] = {}  # insertion order = admission order

    # -- queries --------------------------------------------------------------------------------------

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def reserved_tokens(self) -> int:
        """The KV slots the running batch may need: sequences x the longest reservation."""
        return self._footprint(len(self._running), 0)

    def _footprint(self, rows: int, longest: int) -> int:
        return rows * max([longest, *(s.reserved for s in self._running.values())])

    def get(self, request_id: str) -> SeqStatus | None:
        if request_id in self._running:
            return self._running[request_id]
        return next((s for s in self._waiting if s.request_id == request_id), None)

    def has_unfinished(self) -> bool:
        return bool(self._waiting or self._running)

    # -- changes --------------------------------------------------------------------------------------

    def add(
        self,
        request_id: str,
        prompt_len: int,
        max_tokens: int,
        *,
        arrival_s: float = 0.0,
        deadline_s: float | None = None,
        priority: int = 0,
    ) -> None:
        seq = SeqStatus(
            request_id,
            prompt_len,
            max_tokens,
            arrival_s,
            deadline_s,
            max_model_len=self.config.max_model_len,
            priority=priority,
        )
        insert_waiting(self._waiting, seq, lambda s: s.priority)

    def finish(self, request_id: str) -> bool:
        """Remove a request (finished, aborted or expired) wherever it is; False if unknown."""
        seq = self._running.pop(request_id, None)
        if seq is not None:
            return True
        for s in self._waiting:
            if s.request_id == request_id:
                self._waiting.remove(s)
                return True
        return False

    def on_prefilled(self, chunk: PrefillChunk) -> None:
        seq = self._running[chunk.request_id]
        seq.computed = chunk.start + chunk.length
        if seq.computed >= seq.prompt_len:
            seq.phase = Phase.DECODE

    def on_generated(self, request_id: str, num_tokens: int) -> None:
        self._running[request_id].generated += num_tokens

    # -- the decision ---------------------------------------------------------------------------------

    def schedule(self, now_s: float) -> Schedule:
        out = Schedule()
        for seq in [*self._running.values(), *self._waiting]:
            if seq.deadline_s is not None and now_s > seq.deadline_s:
                out.expired.append(seq.request_id)
        for rid in out.expired:
            self.finish(rid)

        out.preempted = self._preempt_for_interactive()
        out.decode = [s.request_id for s in self._running.values() if s.phase is Phase.DECODE]
        budget = self.config.prefill_chunk_tokens
        for seq in self._running.values():
            if seq.phase is Phase.PREFILL and budget > 0:
                budget -= self._chunk(seq, budget, out)
        while self._waiting and budget > 0 and self._admissible(self._waiting[0]):
            seq = self._waiting.popleft()
            seq.phase = Phase.PREFILL
            seq.reserved = min(seq.demand, self.config.max_batch_tokens)
            self._running[seq.request_id] = seq
            out.admitted.append(seq.request_id)
            budget -= self._chunk(seq, budget, out)

        # the load: everything the engine holds, so queued requests are not delayed by speculative steps
        load = len(self._running) + len(self._waiting)
        limit = self.config.spec_max_batch_size
        out.speculate = bool(out.decode) and load <= limit
        # the draft prefills with the target only next to decoding rows: there, catching up later would pad
        # their one-token draft passes to a whole prompt; alone, the catch-up costs the same after the first
        # token instead of before it
        out.prefill_draft = bool(out.prefill) and bool(out.decode) and load <= limit
        return out

    def _admissible(self, seq: SeqStatus, without: frozenset[str] = frozenset()) -> bool:
        """Whether `seq` fits now (or once the running sequences in `without` are gone)."""
        running = [s for s in self._running.values() if s.request_id not in without]
        if len(running) >= self.config.max_running:
            return False
        # a request larger than the whole budget runs once the batch is empty
        need = min(seq.demand, self.config.max_batch_tokens)
        longest = max([need, *(s.reserved for s in running)])
        return (len(running) + 1) * longest <= self.config.max_batch_tokens or not running

    def _preempt_for_interactive(self) -> list[str]:
        """Preempt the newest batch rows, as few as make room for the interactive request waiting first."""
        if not self._waiting or self._waiting[0].priority != 0 or self._admissible(self._waiting[0]):
            return []
        head = self._waiting[0]
        batch = [s for s in reversed(self._running.values()) if s.priority > 0]  # newest first
        if not batch or not self._admissible(head, frozenset(s.request_id for s in batch)):
            return []  # interactive rows hold the room: preempting batch work would not admit it
        gone: list[SeqStatus] = []
        for s in batch:
            gone.append(s)
            if self._admissible(head, frozenset(g.request_id for g in gone)):
                break
        for s in gone:  # each to the front of the batch class, newest first: they end in arrival order
            del self._running[s.request_id]
            s.prompt_len += s.generated  # readmitted, it prefills what it had generated too
            s.max_tokens = max(0, s.max_tokens - s.generated)
            s.generated, s.computed, s.reserved, s.phase = 0, 0, 0, Phase.WAITING
            i = next((i for i, w in enumerate(self._waiting) if w.priority >= s.priority), len(self._waiting))
            self._waiting.insert(i, s)
        return [s.request_id for s in gone]

    @staticmethod
    def _chunk(seq: SeqStatus, budget: int, out: Schedule) -> int:
        n = min(seq.prompt_len - seq.computed, budget)
        last = seq.computed + n >= seq.prompt_len
        out.prefill.append(PrefillChunk(seq.request_id, seq.computed, n, last))
        return n
