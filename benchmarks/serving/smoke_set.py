"""A correctness smoke set: prompts with unambiguous answers sent through the whole fleet, greedy.

Not a quality benchmark: a check that the serving path does not damage a real model's output (chat
template, stop tokens, detokenization of multi-byte characters, streamed chunks). For each model and
prompt it records the answer and checks that

- the answer holds what the question asks for (a capital, a sum, a function body),
- the streamed chunks join to exactly the final text,
- generation ended on the model's stop token (or ran to `max_tokens` exactly), and no special token
  leaked into the text,
- for a full-precision model, the text equals transformers' own greedy `generate` on the same checkpoint
  (`--reference`), token for token after decoding.

    fleet bench smoke                   # against a running fleet (`fleet up`)
    fleet bench smoke --start-fleet     # start a broker, router and workers first
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from contracts.messages import Chunk, Done
from fleet.client import FleetClient
from fleet.settings import ModelSettings, Quantization, Settings


@dataclasses.dataclass(frozen=True, slots=True)
class SmokePrompt:
    question: str
    expect: tuple[str, ...]  # every one of these substrings must be in the answer
    why: str  # what part of the serving path the prompt exercises


SMOKE_SET = (
    SmokePrompt("What is the capital of France?", ("Paris",), "a one-line fact"),
    SmokePrompt("What is the capital of Germany?", ("Berlin",), "a one-line fact"),
    SmokePrompt("What is the capital of Japan?", ("Tokyo",), "a one-line fact"),
    SmokePrompt("What is 2 + 2?", ("4",), "arithmetic"),
    SmokePrompt("Write a Python function that reverses a string.", ("def ", "[::-1]"), "code, newlines"),
    SmokePrompt("Say 'café' and 'naïve' in a sentence.", ("café",), "multi-byte characters across chunks"),
)
SPECIAL_TOKENS = ("<|im_end|>", "<|im_start|>", "<|endoftext|>")


@dataclasses.dataclass(slots=True)
class SmokeResult:
    model: str
    question: str
    answer: str
    finish_reason: str
    completion_tokens: int
    checks: dict[str, bool]  # name -> passed
    reference: str | None = None  # transformers' greedy answer, when compared

    @property
    def passed(self) -> bool:
        return all(self.checks.values())


async def ask(client: FleetClient, model: str, prompt: SmokePrompt, max_tokens: int) -> SmokeResult:
    streamed: list[str] = []
    messages = [{"role": "user", "content": prompt.question}]
    async for ev in client.stream(messages=messages, model=model, max_tokens=max_tokens, timeout_s=300):
        if isinstance(ev, Chunk):
            streamed.append(ev.text)
        elif isinstance(ev, Done):
            checks = {
                "answer": all(e in ev.text for e in prompt.expect),
                "stream = final text": "".join(streamed) == ev.text,
                # ended on the stop token, or ran to max_tokens exactly: anything else is a serving defect
                "finish reason": (ev.finish_reason.value, ev.usage.completion_tokens == max_tokens)
                in (("stop", False), ("length", True)),
                "no special token in text": not any(t in ev.text for t in SPECIAL_TOKENS),
            }
            return SmokeResult(
                model, prompt.question, ev.text, ev.finish_reason.value, ev.usage.completion_tokens, checks
            )
    raise RuntimeError(f"no terminal event for {prompt.question!r}")


def greedy_chat_answers(path: Path, questions: list[str], max_tokens: int) -> list[str]:
    """transformers' own greedy answers to single-turn chats on a checkpoint (full precision), stop token and
    special tokens removed: what the fleet's answers are compared with."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    lm: Any = AutoModelForCausalLM.from_pretrained(path).eval()  # type: ignore[no-untyped-call]
    out = []
    for q in questions:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            tokens = lm.generate(**ids, max_new_tokens=max_tokens, do_sample=False)[0, ids["input_ids"].shape[1] :]
        out.append(tokenizer.decode(tokens, skip_special_tokens=True))
    return out


def reference_answers(
    model: ModelSettings, settings: Settings, prompts: list[SmokePrompt], max_tokens: int
) -> list[str]:
    """transformers' greedy answers on the model's checkpoint (full precision only)."""
    from fleet.model_paths import resolve_model_path

    path = resolve_model_path(model.path, settings.cache_path)
    return greedy_chat_answers(path, [p.question for p in prompts], max_tokens)


async def run_smoke_set(
    settings: Settings, models: list[str], *, max_tokens: int = 64, reference: bool = True
) -> list[SmokeResult]:
    results: list[SmokeResult] = []
    prompts = list(SMOKE_SET)
    async with FleetClient(settings) as client:
        for name in models:
            for p in prompts:
                results.append(await ask(client, name, p, max_tokens))
    if reference:
        for name in models:
            model = settings.model(name)
            if model.quantization is not Quantization.NONE:
                continue  # bitsandbytes kernels round differently from full precision: no exact reference
            want = reference_answers(model, settings, prompts, max_tokens)
            for r, expected in zip([r for r in results if r.model == name], want, strict=True):
                r.reference = expected
                r.checks["= transformers generate"] = r.answer == expected
    return results


def _cell(text: str, limit: int = 160) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("\n", "⏎ ")


def markdown(results: list[SmokeResult], *, meta: dict[str, str]) -> str:
    passed = sum(r.passed for r in results)
    lines = [
        "# Correctness smoke set through the fleet",
        "",
        f"{meta['machine_detail']}; commit {meta['commit']}; {meta['date']}. Greedy, chat template, "
        f"max_tokens {meta['max_tokens']}. {passed}/{len(results)} passed every check.",
        "",
        "| model | question | answer (⏎ = newline) | tokens | checks |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for r in results:
        failed = [k for k, ok in r.checks.items() if not ok]
        verdict = "all passed" + (" (= transformers)" if r.reference is not None and not failed else "")
        lines.append(
            f"| {r.model} | {_cell(r.question)} | {_cell(r.answer)} | {r.completion_tokens} | "
            f"{verdict if not failed else 'FAILED: ' + ', '.join(failed)} |"
        )
    return "\n".join(lines) + "\n"


def publish(
    results: list[SmokeResult], out_dir: Path | None, *, machine: str | None, max_tokens: int
) -> dict[str, Path]:
    from benchmarks.common.results import collect_meta, result_path

    meta = collect_meta(machine=machine, simulated=False)
    info = {
        "machine_detail": meta.machine_detail,
        "commit": meta.commit,
        "date": meta.date,
        "max_tokens": str(max_tokens),
    }
    md = result_path("smoke", meta, "md", out_dir=out_dir)
    md.write_text(markdown(results, meta=info))
    js = result_path("smoke", meta, "json", out_dir=out_dir)
    js.write_text(json.dumps({"meta": info, "results": [dataclasses.asdict(r) for r in results]}, indent=1) + "\n")
    return {"md": md, "json": js}
