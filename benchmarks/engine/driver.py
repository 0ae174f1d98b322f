"""Closed-loop drivers for the engine benchmark: the engine stepped in this thread, and
the baseline of sequential `model.generate` calls. Times are perf_counter seconds; the
metrics are benchmarks.common.metrics' (vLLM's definitions)."""

from __future__ import annotations

import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmarks.common.metrics import Distribution, RequestTrace, distribution, request_metrics
from worker.engine.api import EngineRequest, SamplingParams
from worker.engine.continuous import ContinuousEngine
from worker.loader import ModelBundle


@dataclass(frozen=True, slots=True)
class BenchPrompt:
    ids: list[int]


@dataclass(slots=True)
class RunResult:
    traces: list[RequestTrace]
    duration_s: float
    outputs: dict[int, list[int]]  # prompt index -> greedy output tokens
    draft_tokens: int = 0
    accepted_tokens: int = 0
    kv_cache_bytes: int = 0
    weights_bytes: int = 0
    spec_steps: int = 0
    steps: int = 0
    ttft: Distribution = field(init=False)
    tpot: Distribution = field(init=False)

    def __post_init__(self) -> None:
        per = [m for m in (request_metrics(t) for t in self.traces) if m is not None]
        self.ttft = distribution([m.ttft for m in per])
        self.tpot = distribution([m.tpot for m in per if m.tpot is not None])

    @property
    def output_tokens(self) -> int:
        return sum(t.output_tokens for t in self.traces)

    @property
    def output_tok_s(self) -> float:
        return self.output_tokens / self.duration_s if self.duration_s else 0.0

    @property
    def acceptance(self) -> float | None:
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else None


def median_run(runs: list[RunResult]) -> RunResult:
    """The repeat of median output throughput (the upper middle one of an even count)."""
    return sorted(runs, key=lambda r: r.output_tok_s)[len(runs) // 2]


def load_prompts(tokenizer: Any, *, n: int, prompt_len: int, seed: int) -> list[BenchPrompt]:
    """`n` prompts of exactly `prompt_len` tokens: windows of held-out demo-corpus text (Python source
    the demo models were not trained on) when the corpus is available, else random words."""
    rng = random.Random(seed)
    texts: list[str] = []
    try:
        from fleet.demo_models.corpus import load_corpus

        texts = [t for t in load_corpus(4_000_000, seed=seed).heldout if len(t) > 8 * prompt_len]
    except Exception:  # the corpus is optional: any failure falls back to words
        texts = []
    if not texts:
        from benchmarks.common.datasets import _WORDS

        texts = [" ".join(rng.choice(_WORDS) for _ in range(4 * prompt_len)) for _ in range(n)]
    out: list[BenchPrompt] = []
    while len(out) < n:
        ids = tokenizer(rng.choice(texts))["input_ids"]
        if len(ids) <= prompt_len:
            continue
        start = rng.randrange(0, len(ids) - prompt_len)
        out.append(BenchPrompt([int(i) for i in ids[start : start + prompt_len]]))
    return out


def drive_engine(
    engine: ContinuousEngine, prompts: list[BenchPrompt], concurrency: int, n: int, output_len: int
) -> RunResult:
    """`concurrency` clients; each sends its next request when its previous one is done."""
    before = engine.stats()
    traces: dict[str, tuple[int, RequestTrace]] = {}
    outputs: dict[int, list[int]] = {}
    sent = done = 0
    kv_max = 0
    t0 = time.perf_counter()
    while done < n:
        while sent < n and sent - done < concurrency:
            i = sent % len(prompts)
            rid = f"q{sent}"
            engine.add_request(EngineRequest(rid, prompts[i].ids, SamplingParams(max_tokens=output_len)))
            traces[rid] = (i, RequestTrace(send_s=time.perf_counter(), prompt_tokens=len(prompts[i].ids)))
            outputs[i] = []
            sent += 1
        outs = engine.step()
        now = time.perf_counter()
        for o in outs:
            i, tr = traces[o.request_id]
            if o.new_token_ids:
                tr.token_event_s.append(now)
                tr.output_tokens += len(o.new_token_ids)
                outputs[i] = outputs[i] + o.new_token_ids
            if o.finished is not None:
                tr.done_s = now
                done += 1
        kv_max = max(kv_max, engine.stats().kv_cache_bytes)
    duration = time.perf_counter() - t0
    after = engine.stats()
    return RunResult(
        [t for _, t in traces.values()],
        duration,
        outputs,
        draft_tokens=after.spec_draft_tokens - before.spec_draft_tokens,
        accepted_tokens=after.spec_accepted_tokens - before.spec_accepted_tokens,
        kv_cache_bytes=kv_max,
        weights_bytes=after.weights_bytes,
        spec_steps=int(after.extra["spec_steps"] - before.extra["spec_steps"]),
        steps=int(after.extra["steps"] - before.extra["steps"]),
    )


class _FirstToken:
    """A generate streamer that notes when the first new token arrives (put() gets the prompt first)."""

    def __init__(self) -> None:
        self.calls = 0
        self.first_s: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2:
            self.first_s = time.perf_counter()

    def end(self) -> None:
        pass


def drive_generate(
    bundle: ModelBundle, prompts: list[BenchPrompt], concurrency: int, n: int, output_len: int
) -> RunResult:
    """The baseline: one `generate` call at a time, FIFO. Client k sends request i+c when request i is
    done, so request i waits for the ones ahead of it (its TTFT includes that queueing)."""
    done_at: list[float] = []
    traces: list[RequestTrace] = []
    outputs: dict[int, list[int]] = {}
    t0 = time.perf_counter()
    for r in range(n):
        i = r % len(prompts)
        send = t0 if r < concurrency else done_at[r - concurrency]
        trace = RequestTrace(send_s=send, prompt_tokens=len(prompts[i].ids))
        streamer = _FirstToken()
        with torch.inference_mode():
            out = bundle.model.generate(
                torch.tensor([prompts[i].ids], device=bundle.device),
                attention_mask=torch.ones(1, len(prompts[i].ids), dtype=torch.long, device=bundle.device),
                max_new_tokens=output_len,
                min_new_tokens=output_len,
                do_sample=False,
                pad_token_id=bundle.tokenizer.pad_token_id or 0,
                streamer=streamer,
            )
        now = time.perf_counter()
        tokens = [int(t) for t in out[0, len(prompts[i].ids) :]]
        trace.token_event_s = [streamer.first_s or now, now]
        trace.output_tokens = len(tokens)
        trace.done_s = now
        done_at.append(now)
        traces.append(trace)
        outputs[i] = tokens
    return RunResult(traces, time.perf_counter() - t0, outputs, weights_bytes=bundle.weights_bytes)


def hf_generate_batch(path: Any, prompts: list[BenchPrompt], n: int, output_len: int) -> dict[str, float]:
    """transformers' own continuous-batching manager (`generate_batch`), offline: all `n` requests at
    once. Only throughput: it reports no per-token times."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    config = GenerationConfig(
        max_new_tokens=output_len, min_new_tokens=output_len, do_sample=False, eos_token_id=None, pad_token_id=0
    )
    inputs = [prompts[i % len(prompts)].ids for i in range(n)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notices about defaults are not ours to fix
        model.generate_batch(inputs=inputs[:2], generation_config=config, progress_bar=False)  # warm-up
        t0 = time.perf_counter()
        out = model.generate_batch(inputs=inputs, generation_config=config, progress_bar=False)
        duration = time.perf_counter() - t0
    tokens = sum(len(o.generated_tokens) for o in out.values())
    return {
        "requests": n,
        "output_tokens": tokens,
        "duration_s": round(duration, 3),
        "output_tok_s": round(tokens / duration, 1),
    }
