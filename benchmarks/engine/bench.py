"""Engine benchmark, in process (no Kafka): output tokens/s, TTFT and TPOT at several
concurrencies for

  (a) baseline: sequential `model.generate` calls (one request at a time, FIFO),
  (b) the engine without speculation,
  (c) the engine with speculation (the draft model; the engine decides per step),
  (d) the engine on 8-bit weights (bitsandbytes LLM.int8()),
  (e) the engine on 4-bit weights (bitsandbytes nf4),

same model and prompts in one run. Closed loop: `c` clients each send their next
request when the previous one is done. Outputs are greedy and fixed-length (EOS
ignored, like `vllm bench serve --ignore-eos`), and the greedy outputs of the
configurations are compared token for token.

    python -m benchmarks.engine.bench            # the full run, results in benchmarks/results/
    python -m benchmarks.engine.bench --quick    # a short smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.engine.driver import (
    BenchPrompt,
    RunResult,
    drive_engine,
    drive_generate,
    hf_generate_batch,
    load_prompts,
    median_run,
)
from benchmarks.engine.report import Row, publish
from fleet.settings import ModelSettings, Quantization
from worker.engine import engine_config
from worker.engine.continuous import ContinuousEngine, EngineConfig
from worker.loader import ModelBundle, load_bundle


@dataclasses.dataclass(frozen=True, slots=True)
class BenchConfig:
    key: str
    label: str
    quantization: Quantization = Quantization.NONE
    engine: bool = True
    speculate: bool = False


CONFIGS = {
    c.key: c
    for c in (
        BenchConfig("a", "baseline: sequential generate", engine=False),
        BenchConfig("b", "engine"),
        BenchConfig("c", "engine + speculation", speculate=True),
        BenchConfig("d", "engine, int8", Quantization.INT8),
        BenchConfig("e", "engine, nf4", Quantization.NF4),
    )
}


def _with_draft(cfg: BenchConfig, args: argparse.Namespace) -> bool:
    return cfg.speculate and args.spec_method in ("hybrid", "draft")


def _with_ngram(cfg: BenchConfig, args: argparse.Namespace) -> bool:
    return cfg.speculate and args.spec_method in ("hybrid", "ngram")


def _needs_draft(args: argparse.Namespace, keys: list[str]) -> bool:
    """Whether any configuration to run proposes with the draft model (prompt lookup needs none)."""
    return any(_with_draft(CONFIGS[k], args) for k in keys)


def _bundles(args: argparse.Namespace, keys: list[str]) -> dict[Quantization, ModelBundle]:
    out: dict[Quantization, ModelBundle] = {}
    draft = args.draft if _needs_draft(args, keys) else None
    for key in keys:
        q = CONFIGS[key].quantization
        if q in out:
            continue
        ms = ModelSettings(
            name="bench",
            path=args.target,
            draft_path=draft if q is Quantization.NONE else None,
            quantization=q,
            max_model_len=args.max_model_len,
        )
        out[q] = dataclasses.replace(load_bundle(ms, Path(args.cache_dir).expanduser()), eos_token_ids=frozenset())
    return out


def _engine(bundle: ModelBundle, cfg: BenchConfig, args: argparse.Namespace) -> ContinuousEngine:
    ms = ModelSettings(
        name="bench",
        path=args.target,
        max_running=max(args.concurrency),
        num_speculative_tokens=args.spec_tokens,
        spec_max_batch_size=args.spec_max_batch if cfg.speculate else 0,
        prefill_chunk_tokens=args.prefill_chunk,
        ngram_speculation=_with_ngram(cfg, args),
    )
    b = bundle if _with_draft(cfg, args) else dataclasses.replace(bundle, draft=None, draft_weights_bytes=0)
    config = dataclasses.replace(
        engine_config(ms, seed=0), spec_min_draft_prob=args.spec_min_prob, ngram_min=args.ngram_min
    )
    return ContinuousEngine(b, config)


def run_point(
    cfg: BenchConfig, bundle: ModelBundle, prompts: list[BenchPrompt], c: int, args: argparse.Namespace
) -> RunResult:
    """One configuration at one concurrency, after a short warm-up."""
    n = max(args.min_requests, args.requests_per_client * c)
    if cfg.engine:
        engine = _engine(bundle, cfg, args)
        drive_engine(engine, prompts, 1, 2, 8)  # warm-up
        res = drive_engine(engine, prompts, c, n, args.output_len)
    else:
        drive_generate(bundle, prompts, 1, 1, 8)  # warm-up
        res = drive_generate(bundle, prompts, c, n, args.output_len)
    acc = f"  accept {res.acceptance:.2f}" if res.acceptance is not None else ""
    print(
        f"  ({cfg.key}) c={c:>2}: {res.output_tok_s:8.1f} tok/s  TTFT p50 {res.ttft.median:7.1f} ms  "
        f"TPOT mean {res.tpot.mean:6.2f} ms{acc}",
        flush=True,
    )
    return res


def main(argv: list[str] | None = None) -> int:
    defaults, engine_defaults = ModelSettings(name="x", path="x"), EngineConfig()
    p = argparse.ArgumentParser(prog="python -m benchmarks.engine.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="demo:large")
    p.add_argument(
        "--draft",
        default="demo:small",
        help="the draft model for --spec-method draft/hybrid ('none': no draft; with --spec-method ngram, or "
        "without configuration c, none is loaded whatever this says)",
    )
    p.add_argument("--cache-dir", default="~/.cache/llm-fleet")
    p.add_argument("--configs", default="abcde", help="which of a-e to run")
    p.add_argument("--concurrency", default="1,4,16,32")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--requests-per-client", type=int, default=2)
    p.add_argument("--min-requests", type=int, default=8)
    p.add_argument("--spec-tokens", type=int, default=defaults.num_speculative_tokens)
    p.add_argument("--spec-max-batch", type=int, default=defaults.spec_max_batch_size)
    p.add_argument(
        "--spec-method",
        choices=("hybrid", "draft", "ngram"),
        default="hybrid",
        help="(c)'s proposer: prompt lookup first then the draft model, the draft model, or prompt lookup",
    )
    p.add_argument("--ngram-min", type=int, default=engine_defaults.ngram_min, help="shortest lookup match used")
    p.add_argument("--spec-min-prob", type=float, default=engine_defaults.spec_min_draft_prob)
    p.add_argument("--prefill-chunk", type=int, default=defaults.prefill_chunk_tokens)
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0: torch's default); 1 by default: on a shared 2-core machine OpenMP's barrier "
        "spinning collapses under other load, and every configuration runs on the same thread count",
    )
    p.add_argument("--repeats", type=int, default=1, help="runs per point; the median-throughput one is kept")
    p.add_argument(
        "--hf-batch",
        action="store_true",
        help="also time transformers' own continuous batching (generate_batch), offline, at the top concurrency",
    )
    p.add_argument("--quick", action="store_true", help="c=1,4; short outputs; few requests")
    p.add_argument("--note", default="", help="a line for the report (e.g. where the checkpoints came from)")
    p.add_argument("--out", default=None, help="results directory (default benchmarks/results)")
    args = p.parse_args(argv)
    args.concurrency = [int(x) for x in args.concurrency.split(",")]
    if args.quick:
        args.concurrency, args.output_len, args.min_requests, args.requests_per_client = [1, 4], 16, 4, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    keys = [k for k in args.configs if k in CONFIGS]
    if args.draft.lower() in ("", "none"):
        args.draft = None
    if _needs_draft(args, keys) and args.draft is None:
        p.error(f"--spec-method {args.spec_method} needs a draft model; use --spec-method ngram or name --draft")
    if not _needs_draft(args, keys):
        args.draft = None  # nothing loads it, and the report says so
    bundles = _bundles(args, keys)
    tokenizer = next(iter(bundles.values())).tokenizer
    prompts = load_prompts(tokenizer, n=64, prompt_len=args.prompt_len, seed=0)
    rows: list[Row] = []
    outputs: dict[str, dict[int, list[int]]] = {}
    t0 = time.time()
    # concurrency outside, configurations inside, repeats round-robin: compared numbers are measured close
    # together in time; each point reports its median-throughput repeat (a shared CPU is noisy)
    load_before = os.getloadavg()
    for c in args.concurrency:
        runs: dict[str, list[RunResult]] = {k: [] for k in keys}
        for _ in range(args.repeats):
            for key in keys:
                cfg = CONFIGS[key]
                runs[key].append(run_point(cfg, bundles[cfg.quantization], prompts, c, args))
        for key in keys:
            cfg = CONFIGS[key]
            label = f"{cfg.label} ({args.spec_method})" if cfg.speculate else cfg.label
            bundle = bundles[cfg.quantization]
            rows.append(Row.of(cfg.key, label, c, runs[key], bundle, with_draft=_with_draft(cfg, args)))
            outputs.setdefault(key, {}).update(median_run(runs[key]).outputs)
    rows.sort(key=lambda r: (r.config, r.concurrency))
    params: dict[str, Any] = {
        k: getattr(args, k)
        for k in (
            "target",
            "draft",
            "prompt_len",
            "output_len",
            "spec_tokens",
            "spec_max_batch",
            "spec_method",
            "spec_min_prob",
            "ngram_min",
            "prefill_chunk",
        )
    }
    if args.hf_batch:
        n = max(args.min_requests, *args.concurrency)
        target = next(iter(bundles.values())).path
        params["hf_generate_batch"] = hf_generate_batch(target, prompts, n, args.output_len)
        print(f"  transformers generate_batch, {n} at once: {params['hf_generate_batch']['output_tok_s']} tok/s")
    params["torch_threads"] = torch.get_num_threads()
    params["note"] = args.note
    params["repeats"] = args.repeats
    params["loadavg_1m_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    params["wall_s"] = round(time.time() - t0, 1)
    paths = publish(rows, outputs, params, out_dir=Path(args.out) if args.out else None)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
