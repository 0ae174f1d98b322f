"""Complexity routing, measured as RouteLLM measures routers (issue 14), and its cost in the router's hot path.

    quality: the shipped artifact on the held-out split of corpora/complexity/prompts.jsonl: share of traffic
             to the cheap tier, share of complex prompts misrouted there, share of simple prompts sent up, at the
             artifact's threshold and as a curve over thresholds (plot)
    latency: inside a router process (RouterService built from settings, as `fleet router` builds it), pinned to
             one core: the resolve_model stage's classification of every prompt of the set, p50/p99 per request
    compare: the same prompts through an encoder shaped like all-MiniLM-L6-v2 (6 layers, 384 wide; random weights:
             the cost of the architecture, not of a trained model), one thread, for the latency budget only

Run `python -m benchmarks.router.complexity [--repeats 5] [--no-encoder]`; results go to
benchmarks/results/complexity_<machine>_<date>_<commit>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.common.results import RESULTS_DIR, collect_meta, result_path
from fleet.settings import Settings
from router.complexity.model import DEFAULT_ARTIFACT
from router.policies.classify import Classifier
from router.service import RouterService
from router.stages.resolve_model import ResolveModel
from training.complexity import DEFAULT_TOKENS, curve, heldout_scores, load_examples

GOAL_CHEAP, GOAL_MISROUTED, GOAL_P99_MS = 0.60, 0.05, 2.0


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def quality(classifier: Classifier) -> dict[str, Any]:
    examples, scores = heldout_scores(classifier.model)
    labels = [e.complex for e in examples]
    points = curve(scores, labels)
    best = max(
        (p for p in points if p["complex_misrouted"] <= GOAL_MISROUTED), key=lambda p: p["cheap_share"], default=None
    )
    at60 = min((p for p in points if p["cheap_share"] >= GOAL_CHEAP), key=lambda p: p["threshold"], default=None)
    return {
        "artifact": msgspec.structs.asdict(classifier.model.artifact.heldout)
        | {"cheap_share_target": classifier.model.artifact.cheap_share_target},
        "best_share_with_misrouted_at_most_5pct": best,
        "misrouted_at_60pct_cheap": at60,
        "curve": points,
    }


def latency(repeats: int) -> dict[str, Any]:
    """Per-request time of the resolve_model stage's classification, in a RouterService built as the router
    builds it, this process pinned to one core."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    service = RouterService(Settings())
    stage = next(s for s in service.pipeline.stages if isinstance(s, ResolveModel))
    classifier: Classifier = stage._classifier
    reqs = [e.request for e in load_examples()]
    for r in reqs[:200]:  # warm up
        classifier.decide(r)
    per: list[float] = []
    for _ in range(repeats):
        for r in reqs:
            t0 = time.perf_counter_ns()
            classifier.decide(r)
            per.append((time.perf_counter_ns() - t0) / 1e6)
    return {
        "requests": len(per),
        "p50_ms": round(statistics.median(per), 4),
        "p99_ms": round(_pct(per, 0.99), 4),
        "max_ms": round(max(per), 4),
        "mean_ms": round(statistics.fmean(per), 4),
        "cores": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def encoder_latency(n: int = 300) -> dict[str, Any]:
    """all-MiniLM-L6-v2's shape (BERT, 6 layers, hidden 384, 12 heads, FFN 1536), random weights, one thread; the
    sequence lengths are the set's prompts' (about 1.3 WordPiece tokens per word, cut at 256 as the model is)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    model = BertModel(cfg).eval()
    lengths = []
    for e in load_examples()[:n]:
        from router.complexity.features import parts

        p = parts(e.request)
        lengths.append(min(256, max(4, round(1.3 * len((p.system + " " + p.user).split())) + 2)))
    per: list[float] = []
    with torch.inference_mode():
        for length in lengths[:20]:
            model(input_ids=torch.randint(1000, 2000, (1, length)))
        for length in lengths:
            ids = torch.randint(1000, 2000, (1, length))
            t0 = time.perf_counter_ns()
            model(input_ids=ids)
            per.append((time.perf_counter_ns() - t0) / 1e6)
    return {
        "requests": len(per),
        "p50_ms": round(statistics.median(per), 3),
        "p99_ms": round(_pct(per, 0.99), 3),
        "median_tokens": statistics.median(lengths),
    }


def plot(points: list[dict[str, float]], threshold: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p["threshold"] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(t, [p["cheap_share"] for p in points], label="traffic to the cheap tier")
    ax.plot(t, [p["complex_misrouted"] for p in points], label="complex prompts misrouted to it")
    ax.plot(t, [p["simple_sent_up"] for p in points], label="simple prompts sent up")
    ax.axvline(threshold, color="grey", linestyle="--", linewidth=1, label=f"shipped threshold {threshold:.3f}")
    ax.axhline(GOAL_CHEAP, color="tab:blue", linestyle=":", linewidth=0.8)
    ax.axhline(GOAL_MISROUTED, color="tab:orange", linestyle=":", linewidth=0.8)
    ax.set_xlabel("threshold (cheap tier takes score <= threshold)")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(meta: dict[str, Any], q: dict[str, Any], lat: dict[str, Any], enc: dict[str, Any] | None) -> str:
    a = q["artifact"]
    best, at60 = q["best_share_with_misrouted_at_most_5pct"], q["misrouted_at_60pct_cheap"]
    lines = [
        "# Complexity routing",
        "",
        f"Machine: {meta['machine_detail']}; commit {meta['commit']}; {meta['date']}.",
        f"Artifact: `{DEFAULT_ARTIFACT.name}` ({DEFAULT_ARTIFACT.stat().st_size:,} bytes; its training input "
        f"`{DEFAULT_TOKENS.name}` {DEFAULT_TOKENS.stat().st_size:,} bytes); held-out split: {a['requests']} requests "
        f"({a['complex']} complex).",
        "",
        "| measure | value | goal |",
        "| --- | --- | --- |",
        f"| threshold (for {a['cheap_share_target']:.0%} of the reference out-of-fold scores: the training split "
        f"less its training-only pass) | {a['threshold']:.4f} | |",
        f"| traffic to the cheap tier | {a['cheap_share']:.1%} | >= {GOAL_CHEAP:.0%} |",
        f"| complex prompts misrouted to it | {a['complex_misrouted']:.1%} ({a['complex_to_cheap']}/{a['complex']}) | "
        f"<= {GOAL_MISROUTED:.0%} |",
        f"| simple prompts sent up | {a['simple_up_share']:.1%} ({a['simple_sent_up']}/{a['simple']}) | |",
        f"| ROC AUC | {a['auc']} | |",
        f"| classification p50 / p99 per request (router process, one core) | {lat['p50_ms']:.3f} / "
        f"{lat['p99_ms']:.3f} ms | p99 <= {GOAL_P99_MS} ms |",
    ]
    if best:
        lines.append(
            f"| most traffic to the cheap tier with <= 5% complex misrouted | {best['cheap_share']:.1%} "
            f"(threshold {best['threshold']:.2f}) | |"
        )
    if at60:
        lines.append(
            f"| complex misrouted at >= 60% to the cheap tier | {at60['complex_misrouted']:.1%} "
            f"(threshold {at60['threshold']:.2f}) | |"
        )
    if enc:
        lines.append(
            f"| an all-MiniLM-L6-v2-shaped encoder, p50 / p99 (one thread, median {enc['median_tokens']} tokens) | "
            f"{enc['p50_ms']:.2f} / {enc['p99_ms']:.2f} ms | |"
        )
    lines += ["", "Misrouting by hard case (held-out):", "", "| tag | requests | complex -> cheap | simple sent up |"]
    lines.append("| --- | --- | --- | --- |")
    for tag, c in a["by_tag"].items():
        up = f"{c['simple_sent_up']}/{c['simple']}"
        lines.append(f"| {tag} | {c['requests']} | {c['complex_to_cheap']}/{c['complex']} | {up} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-encoder", action="store_true", help="skip the MiniLM-shaped encoder's latency")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--machine", default=None)
    args = ap.parse_args()
    meta_obj = collect_meta(machine=args.machine, simulated=False)
    meta = asdict(meta_obj)
    q = quality(Classifier(Settings().router.tiers, Settings().model_names))
    lat = latency(args.repeats)
    enc = None if args.no_encoder else encoder_latency()
    md = result_path("complexity", meta_obj, "md", out_dir=args.out)
    result_path("complexity", meta_obj, "json", out_dir=args.out).write_text(
        json.dumps({"meta": meta, "quality": q, "latency": lat, "encoder": enc}, indent=1) + "\n"
    )
    md.write_text(markdown(meta, q, lat, enc))
    a = q["artifact"]
    title = (
        f"held-out {a['requests']} prompts: {a['cheap_share']:.0%} cheap, {a['complex_misrouted']:.0%} of complex "
        f"misrouted at the shipped threshold"
    )
    plot(q["curve"], a["threshold"], result_path("complexity", meta_obj, "png", out_dir=args.out), title)
    print(md.read_text())


if __name__ == "__main__":
    main()
