"""The engine benchmark's report from hand-made runs: the median repeat, paired goals, Markdown."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

from benchmarks.common.metrics import RequestTrace
from benchmarks.engine.driver import RunResult, median_run
from benchmarks.engine.report import Row, goals, markdown


def _run(tok_s: float, kv: int = 0) -> RunResult:
    """A run of one request with 3 output tokens at `tok_s` output tokens per second."""
    return RunResult([RequestTrace(0.0, [0.1, 0.2], 0.3, 4, 3)], 3 / tok_s, {0: [1, 2, 3]}, kv_cache_bytes=kv)


def _row(config: str, c: int, tok_s: list[float], tpot: list[float]) -> Row:
    fields: dict[str, Any] = {f.name: 0 for f in dataclasses.fields(Row)}
    fields |= {"config": config, "label": config, "concurrency": c, "acceptance": None}
    return Row(**fields | {"output_tok_s_repeats": tok_s, "tpot_mean_ms_repeats": tpot})


def test_median_run_is_the_upper_middle_by_throughput() -> None:
    runs = [_run(3.0), _run(1.0), _run(2.0)]
    assert median_run(runs) is runs[2]
    runs.append(_run(4.0))
    assert median_run(runs) is runs[0]


def test_row_of_takes_the_median_repeat_and_keeps_every_repeat() -> None:
    runs = [_run(30.0, kv=5), _run(10.0, kv=9), _run(20.0, kv=7)]
    bundle: Any = SimpleNamespace(weights_bytes=100, draft_weights_bytes=10)
    row = Row.of("c", "spec", 4, runs, bundle, with_draft=True)
    assert row.output_tok_s == 20.0
    assert row.output_tok_s_repeats == [30.0, 10.0, 20.0]
    assert row.kv_cache_bytes == 9
    assert row.weights_bytes == 110
    assert Row.of("b", "engine", 4, runs, bundle, with_draft=False).weights_bytes == 100


def test_goals_pair_the_repeats() -> None:
    # medians alone would give 60/10 = 6x; the per-repeat ratios are 6, 4.5 and 4
    rows = [
        _row("a", 4, [10.0, 20.0, 10.0], [1.0, 1.0, 1.0]),
        _row("b", 4, [60.0, 90.0, 40.0], [10.0, 10.0, 10.0]),
        _row("b", 1, [5.0, 5.0], [10.0, 10.0]),
        _row("c", 1, [5.0, 5.0], [5.0, 7.0]),
    ]
    by_goal = {g["goal"]: g for g in goals(rows)}
    tput = by_goal["(b) output tok/s at c=4 >= 5.0x (a)"]
    assert tput["value"] == 4.5 and tput["repeats"] == [4.0, 4.5, 6.0] and not tput["met"]
    tpot = by_goal["(c) mean TPOT at c=1 <= 0.6x (b)"]
    assert tpot["value"] == 0.7 and tpot["repeats"] == [0.5, 0.7] and not tpot["met"]


def test_markdown_has_the_note_the_paired_repeats_and_the_transformers_line() -> None:
    rows = [_row("a", 4, [10.0, 10.0], [1.0, 1.0]), _row("b", 4, [60.0, 70.0], [1.0, 1.0])]
    params = {
        "torch_threads": 1,
        "loadavg_1m_before_after": [0.5, 0.7],
        "repeats": 2,
        "target": "demo:large",
        "draft": "demo:small",
        "prompt_len": 64,
        "output_len": 64,
        "spec_method": "hybrid",
        "spec_tokens": 4,
        "spec_max_batch": 4,
        "note": "checkpoints: demo",
        "hf_generate_batch": {"requests": 8, "output_tok_s": 12.5},
    }
    report = {
        "meta": {"machine_detail": "cpu", "machine": "m", "date": "d", "commit": "c"},
        "params": params,
        "rows": [dataclasses.asdict(r) for r in rows],
        "goals": goals(rows),
        "outputs_vs_b": {"a": {"prompts": 2, "identical": 2}},
    }
    md = markdown(report)
    assert "Note: checkpoints: demo" in md
    assert "| 6.0, 7.0 | yes |" in md
    assert "all 8 requests at once, offline): 12.5 output tok/s" in md
    assert "(a) 2/2" in md
    params["note"] = ""
    assert "Note:" not in markdown(report)
    params["draft"] = None
    md = markdown(report)
    assert "no draft model" in md and "draft `" not in md


def test_prompt_lookup_needs_no_draft_model() -> None:
    from benchmarks.engine.bench import _needs_draft

    for method, configs, needed in (
        ("ngram", "abcde", False),
        ("hybrid", "abcde", True),
        ("draft", "c", True),
        ("hybrid", "abde", False),
    ):
        assert _needs_draft(SimpleNamespace(spec_method=method), list(configs)) is needed
