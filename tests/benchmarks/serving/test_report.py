"""Reports from hand-made traces: JSON round trip, Markdown with every field, PNGs written."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.common.metrics import RequestTrace, ServingMetrics, summarize
from benchmarks.common.results import collect_meta
from benchmarks.serving.report import publish_scale, publish_serving, read_scale, read_serving, serving_markdown
from benchmarks.serving.schema import (
    RebalancePause,
    ScalePoint,
    ScaleReport,
    ServingPoint,
    ServingReport,
    overhead,
    samples,
)


def _traces(ttft: float, n: int = 20) -> list[RequestTrace]:
    out = []
    for i in range(n):
        t0 = i * 0.1
        first = t0 + ttft * (1 + i / n)
        out.append(RequestTrace(t0, [first, first + 0.02, first + 0.04], first + 0.04, 8, 4))
    out.append(RequestTrace(5.0, error="overloaded"))
    return out


def _point(rate: float, ttft_fleet: float) -> ServingPoint:
    fleet, inproc, floor = _traces(ttft_fleet), _traces(0.010), _traces(0.004)
    f, i, fl = (summarize(t, 2.0, {"ttft": 50.0}) for t in (fleet, inproc, floor))
    return ServingPoint(
        label=f"{rate:g} req/s (Poisson)",
        request_rate=rate,
        fleet=f,
        inprocess=i,
        floor=fl,
        overhead=overhead(f, i, fl),
        samples={"fleet": samples(fleet), "inprocess": samples(inproc), "floor": samples(floor)},
    )


def test_overhead_arithmetic() -> None:
    p = _point(2.0, 0.015)
    o = p.overhead
    assert o is not None and p.inprocess is not None and p.floor is not None
    assert math.isclose(o.overhead_p50_ms, p.fleet.ttft.median - p.inprocess.ttft.median)
    assert math.isclose(o.x_floor_p50, o.overhead_p50_ms / p.floor.ttft.median)
    assert o.meets_goal == (o.x_floor_p50 <= 1.5 and o.x_floor_p99 <= 2.0)


def test_serving_report_round_trip_and_files(tmp_path: Path) -> None:
    report = ServingReport(
        meta=collect_meta(simulated=True),
        config={"model": "sim", "engine": "simulated", "num_prompts": 20, "warmups": 2, "seed": 0},
        points=[_point(1.0, 0.012), _point(4.0, 0.02)],
        headline=1,
    )
    files = publish_serving(report, tmp_path)
    assert {"cdf", "rate", "json", "md"} <= files.keys()
    for key in ("cdf", "rate"):
        assert files[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = read_serving(files["json"])
    assert back == report
    md = files["md"].read_text()
    assert "SIMULATED" in md and "n/a" not in md and "overhead" in md.lower()
    assert report.meta.machine in files["json"].name and report.meta.commit.split("+")[0] in files["json"].name
    assert "4 req/s" in serving_markdown(report)


def test_scale_report_files(tmp_path: Path) -> None:
    m: ServingMetrics = summarize(_traces(0.01), 2.0)
    report = ScaleReport(
        meta=collect_meta(simulated=True),
        config={"tokens_per_s": 50},
        points=[ScalePoint(w, p, 10.0, m) for w in (1, 2) for p in (2, 4)],
        rebalance=[RebalancePause("join", 1, 2, 900.0, 40.0, 10.0, 950.0, 3, 5.0)],
    )
    files = publish_scale(report, tmp_path)
    assert files["scaling"].stat().st_size > 1000
    assert read_scale(files["json"]) == report
    md = files["md"].read_text()
    assert md.count("SIMULATED") >= 2 and "join" in md


def test_overhead_sentence_reads_as_a_sentence() -> None:
    import dataclasses

    from benchmarks.serving.report import overhead_sentence
    from benchmarks.serving.schema import Overhead

    base = Overhead(5.0, 8.0, 10.0, 12.0, 0.5, 0.67, meets_goal=True)
    point = dataclasses.replace(_point(1.0, 0.012), overhead=base)
    assert overhead_sentence(point).endswith("p99 <= 2.0x: meets it.")
    neg = dataclasses.replace(point, overhead=dataclasses.replace(base, overhead_p50_ms=-3.0, x_floor_p50=-0.3))
    assert overhead_sentence(neg).endswith(
        ": meets it (a negative overhead means run-to-run noise, e.g. a shared CPU, exceeds what the fleet adds)."
    )
    missed = dataclasses.replace(point, overhead=dataclasses.replace(base, x_floor_p50=2.0, meets_goal=False))
    assert overhead_sentence(missed).endswith(": misses it.")
