"""Per-request state in the worker and the reply events it turns into.

Pure: no Kafka, no torch. The engine driver (worker/driver.py) feeds StepOutputs in and hands the
events that come out to the worker or the in-process benchmark.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from contracts.codec import ContentType
from contracts.messages import Chunk, Done, Error, ErrorCode, FinishReason, Progress, Request, Timings, Usage
from worker.engine.api import FinishKind, StepOutput, acceptance
from worker.output import ChunkCoalescer, IncrementalDetokenizer

_FINISH_REASON = {FinishKind.STOP: FinishReason.STOP, FinishKind.LENGTH: FinishReason.LENGTH}
_ERROR = {
    FinishKind.CANCELLED: (ErrorCode.CANCELLED, "cancelled by a cancel message"),
    FinishKind.EXPIRED: (ErrorCode.EXPIRED, "the deadline passed during generation"),
}


def record_source(tp: object, offset: int) -> str:
    """The model-topic record a progress record belongs to (a takeover resumes only its redelivery)."""
    return f"{getattr(tp, 'topic', tp)}:{getattr(tp, 'partition', '')}:{offset}"


@dataclass(slots=True)
class RequestState:
    request: Request
    run_id: str
    partition: Any  # TopicPartition
    offset: int
    content_type: ContentType
    intake_s: float  # when the request entered the fleet (router intake), time.time()
    detok: IncrementalDetokenizer
    coalescer: ChunkCoalescer
    model: str
    num_prompt_tokens: int = 0
    seq: int = 0
    first_token_s: float | None = None
    last_token_s: float | None = None
    prefill_ms: float = 0.0
    spec_draft: int = 0
    spec_accepted: int = 0
    finished: bool = False
    record: Any = None  # the ConsumerRecord, kept for the DLQ
    prompt_ids: list[int] = field(default_factory=list)
    attempts: int = 0  # times the engine failed with this request among the ones it held, charged to it
    in_engine: bool = False  # False while held back (isolating a failing step's culprit)
    tier: str | None = None  # the router's fleet-tier header: said in `done` and the usage record
    requested_model: str | None = None  # the router's fleet-requested-model header (a fallback): said in `done`
    # resume (llm.progress): the tokens generated so far, the text sent in chunks, and how many of the engine's
    # prompt tokens are this request's own output from an earlier owner
    token_ids: list[int] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    # chunks whose delivery to `reply_to` is not confirmed yet: seq -> text length, from the oldest unconfirmed
    # one to the newest (confirmed ones behind an unconfirmed one stay until it is): a new owner sends them again
    unconfirmed: dict[int, int] = field(default_factory=dict)
    confirmed: set[int] = field(default_factory=set)
    resumed_tokens: int = 0
    resume_finish: FinishKind | None = None  # the earlier owner had finished it: only the final events are left
    started_attempts: int = 0  # workers that started it and died with it, this one included (the progress record)

    def resume(self, p: Progress, now_s: float) -> bool:
        """Continue from an earlier owner's progress: the output processing replays its tokens. False (and
        nothing changed that matters: the caller starts afresh) when the replay does not give the text sent."""
        if not p.token_ids and p.seq:
            return False
        text = "".join(self.detok.push([t]) for t in p.token_ids)
        if p.finish:  # the earlier owner had released the held-back tail too (it is in `p.text`)
            text += self.detok.finish()
        elif self.detok.stopped:
            return False
        if not text.startswith(p.text):
            return False
        self.token_ids = list(p.token_ids)
        self.resumed_tokens = len(p.token_ids)
        self.seq = p.seq
        self.sent = [p.text] if p.text else []
        if len(p.resend) <= p.seq and all(n > 0 for n in p.resend):  # else a record no worker wrote: none again
            self.unconfirmed = {p.seq - len(p.resend) + i: n for i, n in enumerate(p.resend)}
        self.num_prompt_tokens = p.prompt_tokens
        self.resume_finish = FinishKind(p.finish) if p.finish else None
        if len(text) > len(p.text):  # released text the earlier owner had not sent yet: the next chunk's start
            self.coalescer.hold(text[len(p.text) :])
        if p.token_ids:
            self.first_token_s = self.last_token_s = now_s
        return True

    def progress(self, attempts: int, model: str, finish: FinishKind | None = None) -> Progress:
        """The record that lets another worker continue this request from here."""
        return Progress(
            id=self.request.id,
            model=model,
            run_id=self.run_id,
            seq=self.seq,
            token_ids=list(self.token_ids),
            text="".join(self.sent),
            resend=list(self.unconfirmed.values()),
            attempts=attempts,
            prompt_tokens=self.num_prompt_tokens or max(0, len(self.prompt_ids) - self.resumed_tokens),
            finish=finish.value if finish is not None else None,
            tenant=self.request.tenant,
            source=record_source(self.partition, self.offset),
        )

    def on_output(self, out: StepOutput, now_s: float) -> list[Chunk]:
        """Absorb one step's output; returns chunks to send now."""
        if out.num_prompt_tokens:
            self.num_prompt_tokens = out.num_prompt_tokens - self.resumed_tokens
        self.token_ids.extend(out.new_token_ids)
        if out.prefill_ms:
            self.prefill_ms = out.prefill_ms
        self.spec_draft, self.spec_accepted = out.spec_draft_tokens, out.spec_accepted_tokens
        if out.new_token_ids:
            if self.first_token_s is None:
                self.first_token_s = now_s
            self.last_token_s = now_s
        delta = self.detok.push(out.new_token_ids)
        text = self.coalescer.add(delta, len(out.new_token_ids), now_s)
        return [self._chunk(text)] if text else []

    def _chunk(self, text: str) -> Chunk:
        c = Chunk(id=self.request.id, seq=self.seq, text=text, run_id=self.run_id)
        self.seq += 1
        self.sent.append(text)
        self.unconfirmed[c.seq] = len(text)
        return c

    def confirm(self, seq: int) -> None:
        """Chunk `seq` reached `reply_to`: drop the chunks up to the oldest one still unconfirmed."""
        if seq not in self.unconfirmed:
            return
        self.confirmed.add(seq)
        for s in list(self.unconfirmed):
            if s not in self.confirmed:
                break
            del self.unconfirmed[s]
            self.confirmed.discard(s)

    def resend_chunks(self, text: str) -> list[Chunk]:
        """The chunks an earlier owner may not have delivered (the tail of `text`, what it had sent), again."""
        total = sum(self.unconfirmed.values())
        if not self.unconfirmed or total > len(text):
            return []
        out, at = [], len(text) - total
        for seq, n in self.unconfirmed.items():
            out.append(Chunk(id=self.request.id, seq=seq, text=text[at : at + n], run_id=self.run_id))
            at += n
        return out

    def finish(self, kind: FinishKind, now_s: float) -> list[Chunk | Done | Error]:
        """The events that end this request: remaining text as a chunk, then the terminal event."""
        self.finished = True
        events: list[Chunk | Done | Error] = []
        if kind in _ERROR:
            code, msg = _ERROR[kind]
            events.append(
                Error(id=self.request.id, code=code, message=msg, retriable=False, seq=self.seq, run_id=self.run_id)
            )
            return events
        tail = self.detok.finish()
        first = self.coalescer.add(tail, 0, now_s) if tail else None
        rest = (first or "") + (self.coalescer.drain(now_s) or "")
        if rest:
            events.append(self._chunk(rest))
        events.append(
            Done(
                id=self.request.id,
                seq=self.seq,
                text=self.detok.text,
                finish_reason=_FINISH_REASON.get(kind, FinishReason.STOP),
                model=self.model,
                usage=Usage(prompt_tokens=self.num_prompt_tokens, completion_tokens=self.detok.num_tokens),
                timings=self.timings(now_s),
                run_id=self.run_id,
                tier=self.tier,
                requested_model=self.requested_model,
            )
        )
        return events

    def timings(self, now_s: float) -> Timings:
        first = self.first_token_s or now_s
        n = self.detok.num_tokens
        tpot = ((self.last_token_s or first) - first) / (n - 1) * 1000 if n > 1 else 0.0
        queue_s = max(0.0, first - self.prefill_ms / 1000 - self.intake_s)
        return Timings(
            queue_ms=round(queue_s * 1000, 3),
            ttft_ms=round(max(0.0, first - self.intake_s) * 1000, 3),
            tpot_ms=round(tpot, 3),
            total_ms=round(max(0.0, now_s - self.intake_s) * 1000, 3),
            prefill_ms=round(self.prefill_ms, 3),
            spec_draft_tokens=self.spec_draft,
            spec_accepted_tokens=self.spec_accepted,
            spec_acceptance=acceptance(self.spec_accepted, self.spec_draft),
        )


def now_s() -> float:
    return time.time()
