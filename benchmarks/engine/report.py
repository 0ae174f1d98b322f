"""Engine benchmark results: JSON plus a Markdown table, named by the one scheme (common/results.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.common.results import collect_meta, result_path
from benchmarks.engine.driver import RunResult, median_run
from worker.loader import ModelBundle

GOAL_THROUGHPUT_X = 5.0  # (b) at the highest concurrency vs (a)
GOAL_SPEC_TPOT_LOW = 0.6  # (c) / (b) mean TPOT at concurrency 1
GOAL_SPEC_TPOT_HIGH = 1.05  # (c) / (b) mean TPOT at the highest concurrency


@dataclass(frozen=True, slots=True)
class Row:
    config: str
    label: str
    concurrency: int
    requests: int
    output_tokens: int
    duration_s: float
    output_tok_s: float
    ttft_mean_ms: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    tpot_mean_ms: float
    tpot_p50_ms: float
    tpot_p99_ms: float
    acceptance: float | None
    spec_steps: int
    steps: int
    weights_bytes: int
    kv_cache_bytes: int
    # every repeat, in run order (the row's other numbers are from its median-throughput repeat)
    output_tok_s_repeats: list[float]
    tpot_mean_ms_repeats: list[float]

    @classmethod
    def of(cls, key: str, label: str, c: int, runs: list[RunResult], bundle: ModelBundle, *, with_draft: bool) -> Row:
        r = median_run(runs)
        weights = bundle.weights_bytes + (bundle.draft_weights_bytes if with_draft else 0)
        return cls(
            key, label, c, len(r.traces), r.output_tokens, round(r.duration_s, 3), round(r.output_tok_s, 1),
            round(r.ttft.mean, 2), round(r.ttft.median, 2), round(r.ttft.p99, 2),
            round(r.tpot.mean, 3), round(r.tpot.median, 3), round(r.tpot.p99, 3),
            round(r.acceptance, 3) if r.acceptance is not None else None,
            r.spec_steps, r.steps, weights, max(x.kv_cache_bytes for x in runs),
            [round(x.output_tok_s, 1) for x in runs], [round(x.tpot.mean, 3) for x in runs],
        )  # fmt: skip


def _find(rows: list[Row], key: str, c: int) -> Row | None:
    return next((r for r in rows if r.config == key and r.concurrency == c), None)


def _paired(num: list[float], den: list[float]) -> tuple[float, list[float]]:
    """Median of the per-repeat ratios: each repeat ran the configurations back to back, so pairing them
    cancels most of the drift of a shared machine's load."""
    ratios = sorted(n / d for n, d in zip(num, den, strict=True) if d)
    return (ratios[len(ratios) // 2] if ratios else float("nan")), [round(x, 3) for x in ratios]


def goals(rows: list[Row]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cs = sorted({r.concurrency for r in rows})
    if not cs:
        return out
    lo, hi = cs[0], cs[-1]
    a, b = _find(rows, "a", hi), _find(rows, "b", hi)
    if a and b:
        x, each = _paired(b.output_tok_s_repeats, a.output_tok_s_repeats)
        out.append({"goal": f"(b) output tok/s at c={hi} >= {GOAL_THROUGHPUT_X}x (a)", "value": round(x, 2),
                    "repeats": each, "met": x >= GOAL_THROUGHPUT_X})  # fmt: skip
    for c, limit in ((lo, GOAL_SPEC_TPOT_LOW), (hi, GOAL_SPEC_TPOT_HIGH)):
        b, s = _find(rows, "b", c), _find(rows, "c", c)
        if b and s:
            x, each = _paired(s.tpot_mean_ms_repeats, b.tpot_mean_ms_repeats)
            out.append({"goal": f"(c) mean TPOT at c={c} <= {limit}x (b)", "value": round(x, 3), "repeats": each,
                        "met": x <= limit})  # fmt: skip
    return out


def compare_outputs(outputs: dict[str, dict[int, list[int]]]) -> dict[str, Any]:
    """Greedy outputs of each configuration against (b), prompt by prompt."""
    ref = outputs.get("b")
    if ref is None:
        return {}
    result: dict[str, Any] = {}
    for key, outs in outputs.items():
        if key == "b":
            continue
        common = sorted(set(ref) & set(outs))
        same = sum(outs[i] == ref[i] for i in common)
        result[key] = {"prompts": len(common), "identical": same}
    return result


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f}"


def markdown(report: dict[str, Any]) -> str:
    meta, params = report["meta"], report["params"]
    lines = [
        "# Engine benchmark (in process, no Kafka)",
        "",
        f"Machine: {meta['machine_detail']} (`{meta['machine']}`), torch threads {params['torch_threads']}, "
        f"load average (1 min) before/after {params['loadavg_1m_before_after']} (a shared machine). "
        f"Date {meta['date']}, commit `{meta['commit']}`. Each point: the median-throughput of "
        f"{params['repeats']} run(s).",
        f"Target `{params['target']}`, "
        + (f"draft `{params['draft']}`" if params.get("draft") else "no draft model")
        + f"; prompts {params['prompt_len']} tokens, "
        f"outputs {params['output_len']} tokens (greedy, EOS ignored); closed loop, `c` clients; "
        f"speculation ({params['spec_method']}): up to {params['spec_tokens']} tokens while at most "
        f"{params['spec_max_batch']} sequences run or wait.",
        *([f"Note: {params['note']}", ""] if params["note"] else [""]),
        "TTFT = send to first token; TPOT = (E2E - TTFT) / (tokens - 1) (vLLM's definitions). "
        "(a) serves one request at a time, so its TTFT includes the queue behind the other clients.",
        "",
        "| config | c | out tok/s | TTFT p50 ms | TTFT p99 ms | TPOT mean ms | TPOT p50 ms | accept "
        "| weights MB | KV MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        acc = f"{r['acceptance']:.2f}" if r["acceptance"] is not None else "-"
        lines.append(
            f"| ({r['config']}) {r['label']} | {r['concurrency']} | {r['output_tok_s']:.1f} "
            f"| {r['ttft_p50_ms']:.1f} | {r['ttft_p99_ms']:.1f} | {r['tpot_mean_ms']:.2f} "
            f"| {r['tpot_p50_ms']:.2f} | {acc} "
            f"| {_mb(r['weights_bytes'])} | {_mb(r['kv_cache_bytes'])} |"
        )
    hf = params.get("hf_generate_batch")
    if hf:
        lines += [
            "",
            f"For comparison, transformers' own continuous batching (`generate_batch`, all {hf['requests']} "
            f"requests at once, offline): {hf['output_tok_s']} output tok/s.",
        ]
    if report["goals"]:
        lines += ["", "| goal | median of paired repeats | each repeat | met |", "|---|---:|---|---|"]
        lines += [
            f"| {g['goal']} | {g['value']} | {', '.join(map(str, g['repeats']))} | {'yes' if g['met'] else 'no'} |"
            for g in report["goals"]
        ]
    if report["outputs_vs_b"]:
        lines += ["", "Greedy outputs identical to (b), prompt by prompt: " + ", ".join(
            f"({k}) {v['identical']}/{v['prompts']}" for k, v in report["outputs_vs_b"].items())]  # fmt: skip
    return "\n".join(lines) + "\n"


def publish(
    rows: list[Row], outputs: dict[str, dict[int, list[int]]], params: dict[str, Any], *, out_dir: Path | None
) -> list[Path]:
    meta = collect_meta(simulated=False)
    report = {
        "meta": msgspec.to_builtins(meta),
        "params": params,
        "rows": [asdict(r) for r in rows],
        "goals": goals(rows),
        "outputs_vs_b": compare_outputs(outputs),
    }
    json_path = result_path("engine", meta, "json", out_dir=out_dir)
    md_path = result_path("engine", meta, "md", out_dir=out_dir)
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=1) + b"\n")
    md_path.write_text(markdown(report))
    return [json_path, md_path]
