"""The GPU runbook's CPU mode, end to end (so the script a GPU session runs cannot rot between the issues that
have a device), and the graph-shaped decode step against the eager one on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.gpu.bench import (
    SHAPES,
    Variant,
    bound_fraction,
    decode_weight_bytes,
    engine_point,
    load,
    parse,
    peak_bandwidth_gbs,
    random_prompts,
)
from fleet.settings import Quantization

ROOT = Path(__file__).resolve().parents[3]


def test_peak_bandwidth_by_device_name() -> None:
    assert peak_bandwidth_gbs("NVIDIA H200") == 4800.0
    assert peak_bandwidth_gbs("NVIDIA H100 80GB HBM3") == 3350.0
    assert peak_bandwidth_gbs("NVIDIA H100 PCIe") == 2000.0
    assert peak_bandwidth_gbs("cpu") is None
    assert bound_fraction(2_000_000_000, 1200.0, 4800.0) == 0.5
    assert bound_fraction(1, 1.0, None) is None


def test_runbook_cpu_mode_runs_the_benchmark_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu" / "runbook.sh"), "cpu", "--peak-bw-gbs", "20"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (json_path,) = tmp_path.glob("gpu-engine-tiny_*.json")
    (md_path,) = tmp_path.glob("gpu-engine-tiny_*.md")
    rep: dict[str, Any] = json.loads(json_path.read_text())
    md = md_path.read_text()
    assert rep["random_weights"] is True and "RANDOM WEIGHTS" in rep["label"]
    assert md.count("RANDOM WEIGHTS") >= 2 and "RANDOM WEIGHTS" in proc.stdout
    assert rep["skipped"] == []
    assert [s["section"] for s in rep["sections_done"]] == [
        "load bfloat16", "batch-1 decode", "throughput under load", "speculation",
        "quantization int8", "quantization nf4",
    ]  # fmt: skip
    assert rep["bandwidth"]["peak_gbs"] == 20 and rep["bandwidth"]["copy_gbs"] > 0

    # batch 1: generate and the engine (eager, and the graph-shaped step run eagerly on CPU), per weights
    by = {(r["quantization"], r["config"]): r for r in rep["batch1"]}
    for key in [("bfloat16", "generate"), ("bfloat16", "engine"), ("bfloat16", "engine+graphs"),
                ("int8", "generate"), ("int8", "engine"), ("nf4", "generate"), ("nf4", "engine")]:  # fmt: skip
        r = by[key]
        assert r["decode_tok_s"] > 0 and r["output_tok_s"] > 0, key
        assert 0 < r["fraction_of_peak"] < 1 and 0 < r["fraction_of_copy"] < 1, key
    assert rep["batch1_outputs_identical_graphs_vs_eager"] == "2/2"
    assert rep["goals"][0]["met"] in (True, False)

    # under load: every concurrency level for both engines, against sequential generate, KV against its budget
    assert rep["load_baseline"]["output_tok_s"] > 0
    levels = {(r["config"], r["concurrency"]) for r in rep["load"]}
    assert levels == {(k, c) for k in ("engine", "engine+graphs") for c in (1, 8, 32, 64, 128)}
    for r in rep["load"]:
        assert r["output_tok_s"] > 0 and r["ttft_p50_ms"] > 0 and r["tpot_mean_ms"] > 0
        assert r["x_sequential_generate"] > 0 and r["kv_cache_bytes"] > 0 and r["kv_budget_bytes"] > 0
        assert r["requests"] >= r["concurrency"]
        done, total = map(int, r["outputs_identical_to_eager"].split("/"))
        assert done == total > 0

    # quantization: bf16, int8, nf4 with memory and both throughputs; the quantized weights are smaller
    q = {r["quantization"]: r for r in rep["quantization"]}
    assert set(q) == {"bfloat16", "int8", "nf4"}
    for r in q.values():
        assert r["engine_batch1_tok_s"] > 0 and r["engine_tok_s"] > 0 and r["concurrency"] == 32
    assert q["nf4"]["decode_weight_bytes"] < q["int8"]["decode_weight_bytes"] < q["bfloat16"]["decode_weight_bytes"]

    # speculation: prompt lookup with and without at c=1 and c=32, named
    spec = rep["speculation"]
    assert "prompt lookup" in spec["method"] and "no draft model" in spec["method"]
    rows = {(r["config"], r["concurrency"]): r for r in spec["rows"]}
    assert set(rows) == {(k, c) for k in ("no-spec", "ngram") for c in (1, 32)}
    for c in (1, 32):
        assert rows[("ngram", c)]["acceptance"] is not None and rows[("ngram", c)]["tpot_vs_without"] > 0
        assert rows[("no-spec", c)]["tpot_mean_ms"] > 0
    assert "## Speculation" in md and "## Quantization" in md and "## Throughput under load" in md


def test_graph_shaped_decode_gives_the_eager_tokens(tmp_path: Path) -> None:
    """With weights large enough that attention decides the next token (a default-init random model only echoes
    its input), the graph-shaped step (bucketed rows, scratch writes, whole-length attention) must give the
    eager step's greedy tokens, batch after batch as requests come and go."""
    from transformers import LlamaForCausalLM

    shape = SHAPES["tiny"]
    config = shape.config()
    config.initializer_range = 0.5
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "m")
    bundle = load(tmp_path / "m", Quantization.NONE, torch.float32, torch.device("cpu"), 64)
    tensors = [*bundle.model.parameters(), *bundle.model.buffers()]  # tied: the LM head reads the whole embedding
    assert decode_weight_bytes(bundle.model) == sum(t.numel() * t.element_size() for t in tensors)
    args = parse(["--tiny", "--output-len", "24", "--prompt-len", "9"])
    args.max_batch_tokens, args.max_running = 64 * 24, 8
    prompts = random_prompts(shape.vocab, n=16, prompt_len=9, seed=1)
    eager = engine_point(bundle, Variant("engine", "eager"), prompts, 5, 11, args)
    static = engine_point(bundle, Variant("engine+graphs", "static", graphs="static"), prompts, 5, 11, args)
    assert static["outputs"] == eager["outputs"]
    assert static["graph_captures"] == 0  # no capture off CUDA: the step ran eagerly in its graph shape
    assert sum(len(set(o)) for o in eager["outputs"].values()) > 3 * len(eager["outputs"])  # not an echo


def test_graphs_stay_off_where_they_cannot_run() -> None:
    from types import SimpleNamespace

    from worker.engine.cuda_graphs import GraphMode, bucket, unusable

    fwd: Any = SimpleNamespace(fast=object(), device=torch.device("cpu"))
    model: Any = SimpleNamespace(config=SimpleNamespace(quantization_config=None))
    assert unusable(model, fwd, GraphMode.CAPTURE) == "CUDA graphs need a CUDA device"
    assert unusable(model, fwd, GraphMode.STATIC) is None
    quantized: Any = SimpleNamespace(config=SimpleNamespace(quantization_config={"load_in_4bit": True}))
    assert "quantized" in str(unusable(quantized, fwd, GraphMode.STATIC))
    assert unusable(model, SimpleNamespace(fast=None, device=fwd.device), GraphMode.STATIC) is not None
    assert [bucket(n, 128) for n in (1, 3, 8, 9, 33, 100, 128)] == [1, 4, 8, 16, 48, 128, 128]
    assert bucket(100, 100) == 100 and bucket(5, 6) == 6


@pytest.mark.gpu
def test_captured_graphs_give_the_eager_tokens_on_cuda(tmp_path: Path) -> None:
    """On a GPU: the same comparison with real CUDA graphs (bf16)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from transformers import LlamaForCausalLM

    config = SHAPES["tiny"].config()
    config.initializer_range = 0.5
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "m")
    bundle = load(tmp_path / "m", Quantization.NONE, torch.float32, torch.device("cuda"), 64)
    args = parse(["--tiny", "--output-len", "24", "--prompt-len", "9"])
    args.max_batch_tokens, args.max_running = 64 * 24, 8
    prompts = random_prompts(SHAPES["tiny"].vocab, n=16, prompt_len=9, seed=1)
    eager = engine_point(bundle, Variant("engine", "eager"), prompts, 5, 11, args)
    graphs = engine_point(bundle, Variant("engine+graphs", "capture", graphs="capture"), prompts, 5, 11, args)
    assert graphs["graph_captures"] > 0 and graphs["graph_replays"] > 0
    assert graphs["outputs"] == eager["outputs"]
