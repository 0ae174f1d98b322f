"""A short `fleet bench run` against the embedded fleet: a complete report, plots written."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec

from benchmarks.serving.report import publish_serving, read_serving
from benchmarks.serving.runner import ServeConfig, run_serving
from benchmarks.serving.schema import ServingReport
from tests.fixtures_kafka import FleetProcs


def _assert_filled(obj: object, where: str = "report") -> None:
    """No None and no NaN anywhere, except goodput fields when no SLO was given (there is one here)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _assert_filled(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _assert_filled(v, f"{where}[{i}]")
    else:
        assert obj is not None, f"{where} is empty"
        assert not (isinstance(obj, float) and math.isnan(obj)), f"{where} is NaN"


async def test_short_bench_run_produces_complete_report(simulated_fleet: FleetProcs, tmp_path: Path) -> None:
    cfg = ServeConfig(
        model="sim-a",
        num_prompts=12,
        warmups=2,
        input_len=16,
        output_len=8,
        rates=[4.0, 8.0],
        seed=3,
        slos_ms={"ttft": 2000.0, "tpot": 500.0},
        progress=False,
        timeout_s=60.0,
    )
    report = await run_serving(simulated_fleet.settings, cfg, say=lambda _: None)
    assert report.meta.simulated
    assert len(report.points) == 2
    for p in report.points:
        for m in (p.fleet, p.inprocess, p.floor):
            assert m is not None and m.completed == 12 and m.failed == 0, m
        assert p.fleet.tpot.n == 12 and p.fleet.total_output_tokens == 12 * 8
        assert p.overhead is not None and p.fleet.request_goodput is not None
        assert set(p.samples) == {"fleet", "inprocess", "floor"}
    # overall: the fleet is the in-process engine plus Kafka, so it cannot be faster at the median
    head = report.points[report.headline]
    assert head.inprocess is not None and head.fleet.ttft.median > head.inprocess.ttft.median
    files = publish_serving(report, tmp_path)
    raw = msgspec.to_builtins(read_serving(files["json"]))
    _assert_filled(raw)
    assert read_serving(files["json"]) == report and isinstance(report, ServingReport)
    for key in ("cdf", "rate"):
        assert files[key].stat().st_size > 10_000 and files[key].read_bytes()[:4] == b"\x89PNG"
    md = files["md"].read_text()
    assert "SIMULATED" in md and "n/a" not in md and "Goal: p50 <= 1.5x" in md
