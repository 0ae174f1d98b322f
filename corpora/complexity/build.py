"""Builds prompts.jsonl (beside this file) from the hand-written pieces in this folder.

    python corpora/complexity/build.py            # rewrites the JSONL (deterministic)

Each record: id, group (variants of one hand-written core share it), split (train | test: the held-out split, by a
fixed hash of the group, never tuned on), label (simple | complex), category, tags (hard cases), and the request
as the gateway sees it: `prompt` or `messages` (system prompt, earlier turns, the user turn), and `max_tokens`.
See README.md (beside this file) for how the labels were assigned.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

import documents
import fillers
import short_cases
import standalone
import system_prompts

OUT = Path(__file__).resolve().parent / "prompts.jsonl"
SEED = 14
SHORT_SEED = 15  # the training-only third pass (short_cases.py) is wrapped with its own generator
TEST_PERCENT = 25  # share of groups held out

MAX_TOKENS = [16, 32, 64, 128, 256, 512, 1024, 2048]
# how callers set max_tokens: mostly defaults and round numbers, a little larger for bigger tasks (a weak signal)
WEIGHTS = {"simple": [2, 5, 10, 30, 25, 15, 9, 4], "complex": [1, 2, 6, 22, 26, 22, 15, 6]}

DOC_LAYOUTS = [
    "{q}\n\n{d}",
    "{d}\n\n{q}",
    "{d}\n\nQuestion: {q}",
    "Here is the text:\n\n{d}\n\n{q}",
    "{q}\n\n---\n{d}\n---",
]


def cores(rng: random.Random) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for prefix, blocks in (("", standalone.ALL), ("x", standalone.EXTRA)):
        for category, block in blocks.items():
            for i, (label, tags, text) in enumerate(standalone.parse(block)):
                group = f"{category}-{prefix}{i}"
                out.append({"group": group, "category": category, "label": label, "tags": tags, "text": text})
    for name, fn in [
        ("translation", fillers.translation),
        ("rewriting", fillers.rewriting),
        ("classification", fillers.classification),
        ("extraction", fillers.extraction),
        ("maths", fillers.maths),
    ]:
        for i, (label, text, tags) in enumerate(fn(rng)):
            out.append({"group": f"{name}-f{i}", "category": name, "label": label, "tags": tags, "text": text})
    for kind, items in (("doc", documents.DOCS), ("code", documents.CODE)):
        for di, (category, doc, easy, hard) in enumerate(items):
            for label, questions in (("simple", easy), ("complex", hard)):
                for q in questions:
                    tags = ["long_easy" if kind == "doc" else "code_trivial_q"] if label == "simple" else []
                    text = rng.choice(DOC_LAYOUTS).format(q=q, d=doc)
                    group = f"{kind}-{di}"
                    out.append({"group": group, "category": category, "label": label, "tags": tags, "text": text})
    return out


def wrap(core: dict[str, object], rng: random.Random, *, variant: int) -> dict[str, object]:
    """The core as one request: prompt or chat messages, maybe a system prompt and earlier turns, and max_tokens."""
    label, category, text = str(core["label"]), str(core["category"]), str(core["text"])
    tags = list(core["tags"])  # type: ignore[call-overload]
    req: dict[str, object] = {}
    if rng.random() < 0.35:
        req["prompt"] = text
    else:
        messages = []
        if rng.random() < 0.8:
            pool = system_prompts.BY_DOMAIN[category] if rng.random() < 0.65 else system_prompts.ALL
            system = rng.choice(pool)
            messages.append({"role": "system", "content": system})
            if len(system) > 1000:
                tags.append("long_system")
        if rng.random() < 0.15:
            u, a = rng.choice(system_prompts.HISTORY)
            messages += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
            tags.append("multi_turn")
        messages.append({"role": "user", "content": text})
        req["messages"] = messages
    max_tokens = rng.choices(MAX_TOKENS, WEIGHTS[label])[0]
    if rng.random() < 0.1:  # on purpose: trivial asks with a huge budget, hard ones with a tiny one
        max_tokens = rng.choice([1024, 2048]) if label == "simple" else rng.choice([32, 64])
    if (label == "simple" and max_tokens >= 1024) or (label == "complex" and max_tokens <= 64):
        tags.append("max_tokens_mismatch")
    req["max_tokens"] = max_tokens
    return {
        "group": core["group"],
        "variant": variant,
        "label": label,
        "category": category,
        "tags": sorted(set(tags)),
        **req,
    }


def split_of(group: str) -> str:
    h = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16)
    return "test" if h % 100 < TEST_PERCENT else "train"


def build() -> list[dict[str, object]]:
    rng = random.Random(SEED)
    records = []
    seen = set()
    for core in cores(rng):
        # short cores get a second wrapping more often: the same words under a long system prompt or another budget
        n = 2 if rng.random() < (0.45 if len(str(core["text"])) < 400 else 0.15) else 1
        for v in range(n):
            r = wrap(core, rng, variant=v)
            key = json.dumps({k: r.get(k) for k in ("prompt", "messages", "max_tokens")}, sort_keys=True)
            if key not in seen:
                seen.add(key)
                records.append(r)
    rng.shuffle(records)
    out = []
    for i, r in enumerate(records):
        out.append({"id": f"p{i:04d}", "split": split_of(str(r["group"])), **r})
    # the third pass, training split only, appended after the records above so that they (and so the held-out
    # split) are byte-identical to the set before it was added
    srng = random.Random(SHORT_SEED)
    extra = []
    for category, block in short_cases.SHORT.items():
        for i, (label, tags, text) in enumerate(standalone.parse(block)):
            # tagged so that training leaves them out of the reference traffic a cheap share is taken from: this pass
            # over-samples short hard prompts on purpose, real traffic does not
            tags = [*tags, "training_only"]
            core = {"group": f"{category}-s{i}", "category": category, "label": label, "tags": tags, "text": text}
            for v in range(2 if srng.random() < 0.45 else 1):
                r = wrap(core, srng, variant=v)
                key = json.dumps({k: r.get(k) for k in ("prompt", "messages", "max_tokens")}, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    extra.append(r)
    srng.shuffle(extra)
    for i, r in enumerate(extra, len(out)):
        out.append({"id": f"p{i:04d}", "split": "train", **r})
    return out


def main() -> None:
    records = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    n = len(records)
    simple = sum(r["label"] == "simple" for r in records)
    test = sum(r["split"] == "test" for r in records)
    print(f"{n} records ({simple} simple, {n - simple} complex; {test} held out) -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
