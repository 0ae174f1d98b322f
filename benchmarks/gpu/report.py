"""The GPU engine benchmark's Markdown: every table says the weights are random."""

from __future__ import annotations

from typing import Any


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f}" if n >= 2**24 else f"{n / 2**20:.2f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def markdown(rep: dict[str, Any]) -> str:
    meta, p, bw = rep["meta"], rep["params"], rep["bandwidth"]
    lines = [
        f"# Engine at a realistic size ({p.get('shape', '?')} shape, in process, no Kafka)",
        "",
        f"**{rep['label']}.**",
        "",
        f"Device: {p.get('device_name', '?')} (`{meta['machine']}`; {meta['machine_detail']}). Date {meta['date']}, "
        f"commit `{meta['commit']}`, torch {p.get('torch', '?')}.",
        f"Model: Llama architecture, {p.get('layers')} layers, hidden {p.get('hidden')}, intermediate "
        f"{p.get('intermediate')}, vocab {p.get('vocab')}, {p.get('heads')} heads / {p.get('kv_heads')} KV heads, "
        f"tied embeddings, {p.get('dtype')}; built from a config, `save_pretrained`, then `from_pretrained` "
        "(with a BitsAndBytesConfig for int8/nf4).",
        f"Prompts {p.get('prompt_len')} random tokens, outputs {p.get('output_len')} tokens (greedy, EOS ignored); "
        f"closed loop of `c` clients, max({p.get('min_requests')}, {p.get('requests_per_client')} x c) requests per "
        "point. TTFT = send to first token; TPOT = (E2E - TTFT) / (tokens - 1) (vLLM's definitions).",
        f"Bandwidth: peak {_num(bw.get('peak_gbs'), '.0f')} GB/s ({bw.get('peak_source', '?')}); measured copy "
        f"{_num(bw.get('copy_gbs'))} GB/s ({bw.get('copy_note', '')}). HBM bound = peak / weight bytes read per "
        "token; fraction = weight bytes per token x decode tok/s / peak.",
        *([f"Note: {p['note']}"] if p.get("note") else []),
        "",
    ]
    if rep["models"]:
        lines += [
            "## Models",
            "",
            "| weights | params | footprint MiB | bytes read per decode token, MiB | bound tok/s (peak) "
            "| bound tok/s (copy) | load s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for q, m in rep["models"].items():
            lines.append(
                f"| {q} | {m['params']:,} | {_mib(m['weights_bytes'])} | {_mib(m['decode_weight_bytes'])} "
                f"| {_num(m['bound_tok_s_peak'])} | {_num(m['bound_tok_s_copy'])} | {m['load_s']} |"
            )
        lines.append("")
    if rep["batch1"]:
        lines += [
            "## Batch-1 decode against the memory-bandwidth bound",
            "",
            "Decode tok/s = 1000 / mean TPOT (prefill excluded).",
            "",
            "| weights | method | decode tok/s | TPOT ms | TTFT p50 ms | of HBM bound (peak) | of copy bandwidth |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in rep["batch1"]:
            lines.append(
                f"| {r['quantization']} | {r['label']} | {r['decode_tok_s']:.1f} | {r['tpot_mean_ms']:.2f} "
                f"| {r['ttft_p50_ms']:.1f} | {_pct(r['fraction_of_peak'])} | {_pct(r['fraction_of_copy'])} |"
            )
        if rep.get("batch1_outputs_identical_graphs_vs_eager"):
            lines.append(
                f"\nGreedy outputs, graphs vs eager, identical on {rep['batch1_outputs_identical_graphs_vs_eager']}"
                " prompts."
            )
        lines.append("")
    if rep["load"]:
        base = rep.get("load_baseline", {})
        lines += [
            "## Throughput under load",
            "",
            f"Sequential `model.generate` (one request at a time, so its throughput is the same at every c): "
            f"{_num(base.get('output_tok_s'))} output tok/s, TPOT {_num(base.get('tpot_mean_ms'), '.2f')} ms, "
            f"measured at c=1 on {base.get('requests', '?')} requests; at concurrency c each request also waits "
            "for the c - 1 ahead of it, one E2E each. KV MiB: the slot cache's peak during the point; budget: "
            "max_batch_tokens x KV bytes per token.",
            "",
            "| engine | c | out tok/s | x sequential generate | TTFT p50 ms | TTFT p99 ms | TPOT mean ms "
            "| TPOT p99 ms | KV MiB | KV budget MiB | KV of budget | graph captures | outputs as eager |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in rep["load"]:
            lines.append(
                f"| {r['label']} | {r['concurrency']} | {r['output_tok_s']:.1f} | {r['x_sequential_generate']:.2f} "
                f"| {r['ttft_p50_ms']:.1f} | {r['ttft_p99_ms']:.1f} | {r['tpot_mean_ms']:.2f} | {r['tpot_p99_ms']:.2f} "
                f"| {_mib(r['kv_cache_bytes'])} | {_mib(r.get('kv_budget_bytes'))} | {_pct(r.get('kv_of_budget'))} "
                f"| {r.get('graph_captures', 0)} | {r.get('outputs_identical_to_eager', '-')} |"
            )
        lines += [
            "",
            "The slot cache allocates rows of the longest sequence rounded up to 128 positions (and rows in 8s), so "
            "with sequences shorter than that quantum it can hold more than the scheduler's budget counts (KV of "
            "budget above 100%).",
            "",
        ]
    if rep["quantization"]:
        c = rep["quantization"][0]["concurrency"]
        lines += [
            "## Quantization",
            "",
            "| weights | footprint MiB | read per token MiB | peak allocated MiB | generate batch-1 tok/s "
            f"| engine batch-1 tok/s | of HBM bound | engine c={c} out tok/s | c={c} TPOT ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for q in rep["quantization"]:
            lines.append(
                f"| {q['quantization']} | {_mib(q['weights_bytes'])} | {_mib(q['decode_weight_bytes'])} "
                f"| {_mib(q['peak_mem_bytes'])} | {q['generate_batch1_tok_s']:.1f} | {q['engine_batch1_tok_s']:.1f} "
                f"| {_pct(q['engine_batch1_fraction_of_peak'])} | {q['engine_tok_s']:.1f} "
                f"| {q['engine_tpot_mean_ms']:.2f} |"
            )
        lines += ["", "Quantized engines decode eagerly (bitsandbytes kernels are not captured as CUDA graphs).", ""]
    spec = rep["speculation"]
    if spec:
        lines += [
            "## Speculation",
            "",
            f"Method: {spec['method']}. Workload: {spec['workload']}. {spec['policy_note']}.",
            "",
            "| c | configuration | TPOT mean ms | TPOT vs without | out tok/s | accepted | greedy outputs as without "
            "| distinct tokens per output |",
            "|---:|---|---:|---:|---:|---:|---|---:|",
        ]
        for r in spec["rows"]:
            acc = "-" if r["acceptance"] is None else f"{r['acceptance']:.2f}"
            lines.append(
                f"| {r['concurrency']} | {r['label']} | {r['tpot_mean_ms']:.2f} "
                f"| {_num(r.get('tpot_vs_without'), '.3f')} "
                f"| {r['output_tok_s']:.1f} | {acc} | {r.get('outputs_identical_to_without', '-')} "
                f"| {r['distinct_tokens_mean']} |"
            )
        lines.append("")
    if rep["goals"]:
        lines += ["## Goals", "", "| goal | value | met |", "|---|---:|---|"]
        for g in rep["goals"]:
            met = "unknown (no peak bandwidth)" if g["met"] is None else ("yes" if g["met"] else "no")
            lines.append(f"| {g['goal']} ({g['best']}) | {_pct(g['value'])} | {met} |")
        lines.append("")
    if rep["skipped"]:
        lines += ["Skipped: " + "; ".join(f"{s['section']} ({s['reason']})" for s in rep["skipped"]), ""]
    done = ", ".join(f"{s['section']} {s['s']} s" for s in rep["sections_done"])
    lines.append(f"Sections: {done}; checkpoint built in {rep.get('build_checkpoint_s', '-')} s; "
                 f"wall {rep.get('wall_s', '-')} s. {rep['label']}.")  # fmt: skip
    return "\n".join(lines) + "\n"
