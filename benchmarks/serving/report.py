"""Reports: JSON per run plus a Markdown summary and plots, named by the one scheme (common/results.py)."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import msgspec

from benchmarks.common.metrics import Distribution, ServingMetrics
from benchmarks.common.results import result_path
from benchmarks.serving.schema import ScaleReport, ServingPoint, ServingReport

DEFINITIONS = (
    "Definitions (as `vllm bench serve`): TTFT = send to first chunk; ITL = gaps between chunks; "
    "TPOT = (E2EL - TTFT) / (output tokens - 1), single-token outputs excluded; E2EL = send to `done`; "
    "all timed at the client; percentiles are numpy linear; goodput = requests meeting every SLO per second."
)


def write_json(report: ServingReport | ScaleReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=1) + b"\n")
    return path


def read_serving(path: Path) -> ServingReport:
    return msgspec.json.decode(path.read_bytes(), type=ServingReport)


def read_scale(path: Path) -> ScaleReport:
    return msgspec.json.decode(path.read_bytes(), type=ScaleReport)


def _f(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _d(d: Distribution, stat: str) -> str:
    """A statistic of a metric, or '-' when no request had it (e.g. TPOT of one-token outputs)."""
    return _f(d.get(stat)) if d.n else "-"


def _row(name: str, m: ServingMetrics) -> str:
    good = _f(m.request_goodput, 2) if m.request_goodput is not None else "-"
    cells = [
        name,
        _d(m.ttft, "median"),
        _d(m.ttft, "p90"),
        _d(m.ttft, "p99"),
        _d(m.tpot, "median"),
        _d(m.tpot, "p99"),
        _d(m.itl, "median"),
        _d(m.itl, "p99"),
        _d(m.e2el, "median"),
        _d(m.e2el, "p99"),
        _f(m.request_throughput, 2),
        _f(m.output_throughput),
        good,
        f"{m.completed}/{m.completed + m.failed}",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| path | TTFT p50 | TTFT p90 | TTFT p99 | TPOT p50 | TPOT p99 | ITL p50 | ITL p99 | E2EL p50 | E2EL p99 "
    "| req/s | out tok/s | goodput req/s | ok |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def headline_table(point: ServingPoint, *, simulated: bool) -> str:
    """The three paths side by side (milliseconds unless stated)."""
    tag = " (SIMULATED engine)" if simulated else ""
    lines = [HEADER, _row(f"fleet through Kafka{tag}", point.fleet)]
    if point.inprocess is not None:
        lines.append(_row(f"same engine in process, no Kafka{tag}", point.inprocess))
    if point.floor is not None:
        lines.append(_row("raw Kafka floor: 3-hop echo, no work", point.floor))
    return "\n".join(lines)


def overhead_sentence(point: ServingPoint) -> str:
    o = point.overhead
    if o is None:
        return "Overhead not computed (a baseline was skipped)."
    verdict = "meets it" if o.meets_goal else "misses it"
    if o.overhead_p50_ms < 0 or o.overhead_p99_ms < 0:
        verdict += " (a negative overhead means run-to-run noise, e.g. a shared CPU, exceeds what the fleet adds)"
    return (
        f"Fleet TTFT overhead over the in-process engine: p50 {_f(o.overhead_p50_ms)} ms "
        f"= {_f(o.x_floor_p50, 2)}x the raw 3-hop floor ({_f(o.floor_p50_ms)} ms); "
        f"p99 {_f(o.overhead_p99_ms)} ms = {_f(o.x_floor_p99, 2)}x the floor ({_f(o.floor_p99_ms)} ms). "
        f"Goal: p50 <= {o.goal_x_floor_p50}x, p99 <= {o.goal_x_floor_p99}x: {verdict}."
    )


def serving_markdown(report: ServingReport, plots: dict[str, str] | None = None) -> str:
    meta, cfg = report.meta, report.config
    head = report.points[report.headline]
    sim = " **SIMULATED engine (timed token emission, no model).**" if meta.simulated else ""
    out = [
        f"# Serving benchmark: {meta.machine}, {meta.date}, commit {meta.commit}",
        "",
        f"Machine: {meta.machine_detail}. Python {meta.python}.{sim}",
        f"Model `{cfg.get('model')}`, engine `{cfg.get('engine')}`; dataset {cfg.get('dataset')}; "
        f"{cfg.get('num_prompts')} measured requests after {cfg.get('warmups')} warm-up; "
        f"max concurrency {cfg.get('max_concurrency') or 'unbounded'}; seed {cfg.get('seed')}; "
        f"SLOs {cfg.get('slos_ms') or 'none'}.",
        f"Client latency settings: {cfg.get('latency')}.",
        "",
        f"## Headline: {head.label} (ms)",
        "",
        headline_table(head, simulated=meta.simulated),
        "",
        overhead_sentence(head),
        "",
    ]
    if len(report.points) > 1:
        out += [
            "## Against request rate (ms)",
            "",
            "| load | req/s | out tok/s | TTFT p50 | TTFT p99 | in-proc TTFT p50 | in-proc TTFT p99 "
            "| floor p50 | floor p99 | overhead p50 (x floor) | overhead p99 (x floor) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for p in report.points:
            ip, fl, o = p.inprocess, p.floor, p.overhead
            out.append(
                f"| {p.label} | {_f(p.fleet.request_throughput, 2)} | {_f(p.fleet.output_throughput)} "
                f"| {_f(p.fleet.ttft.median)} | {_f(p.fleet.ttft.p99)} "
                f"| {_f(ip.ttft.median) if ip else '-'} | {_f(ip.ttft.p99) if ip else '-'} "
                f"| {_f(fl.ttft.median) if fl else '-'} | {_f(fl.ttft.p99) if fl else '-'} "
                f"| {_f(o.overhead_p50_ms) + f' ({_f(o.x_floor_p50, 2)}x)' if o else '-'} "
                f"| {_f(o.overhead_p99_ms) + f' ({_f(o.x_floor_p99, 2)}x)' if o else '-'} |"
            )
        out.append("")
    errors = {k: v for p in report.points for k, v in p.fleet.errors.items()}
    if errors:
        out += [f"Fleet errors: {errors}.", ""]
    if plots:
        out += ["## Plots", ""] + [f"![{name}]({file})" for name, file in plots.items()] + [""]
    out += [DEFINITIONS, ""]
    return "\n".join(out)


def scale_markdown(report: ScaleReport, plots: dict[str, str] | None = None) -> str:
    meta, cfg = report.meta, report.config
    out = [
        f"# Fleet scaling (SIMULATED engine): {meta.machine}, {meta.date}, commit {meta.commit}",
        "",
        f"**Engine: {report.engine}.** These numbers measure the fleet's Kafka plumbing, routing and "
        "consumer-group behaviour, not a model.",
        f"Machine: {meta.machine_detail}. Simulated speed {cfg.get('tokens_per_s')} tokens/s per sequence, "
        f"max {cfg.get('max_running')} running per worker; {cfg.get('output_len')} output tokens a request; "
        f"{cfg.get('num_prompts')} requests per point at {cfg.get('request_rate')} req/s offered.",
        "",
        "| workers | partitions | req/s | out tok/s | TTFT p50 | TTFT p90 | TTFT p99 | E2EL p50 | E2EL p99 | ok |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in report.points:
        m = p.metrics
        out.append(
            f"| {p.workers} | {p.partitions} | {_f(m.request_throughput, 2)} | {_f(m.output_throughput)} "
            f"| {_f(m.ttft.median)} | {_f(m.ttft.p90)} | {_f(m.ttft.p99)} | {_f(m.e2el.median)} "
            f"| {_f(m.e2el.p99)} | {m.completed}/{m.completed + m.failed} |"
        )
    if report.rebalance:
        out += [
            "",
            "## Rebalance pauses (SIMULATED engine)",
            "",
            "| event | workers | stall (ms) | normal longest gap (ms) | TTFT p50 before | worst TTFT after "
            "| delayed requests |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in report.rebalance:
            out.append(
                f"| {r.event} | {r.workers_before} -> {r.workers_after} | {_f(r.stall_ms)} "
                f"| {_f(r.normal_gap_ms)} "
                f"| {_f(r.ttft_p50_before_ms)} | {_f(r.ttft_max_after_ms)} | {r.delayed_requests} |"
            )
    if plots:
        out += ["", "## Plots", ""] + [f"![{name}]({file})" for name, file in plots.items()]
    out += ["", DEFINITIONS, ""]
    return "\n".join(out)


def publish_serving(report: ServingReport, out_dir: Path | None = None) -> dict[str, Path]:
    """Write `serve_<...>.json`, `.md` and the PNG plots (`_cdf`, `_rate`) to `out_dir` (default benchmarks/results/);
    returns what was written by kind."""
    from benchmarks.serving import plots

    path = functools.partial(result_path, "serve", report.meta, out_dir=out_dir)

    files = {
        "cdf": plots.latency_cdfs(report, path("png", tag="cdf")),
        "rate": plots.rate_curves(report, path("png", tag="rate")),
    }
    md = serving_markdown(report, {k: p.name for k, p in files.items()})
    files["json"] = write_json(report, path("json"))
    files["md"] = path("md")
    files["md"].write_text(md)
    return files


def publish_scale(report: ScaleReport, out_dir: Path | None = None) -> dict[str, Path]:
    from benchmarks.serving import plots

    path = functools.partial(result_path, "scale", report.meta, out_dir=out_dir)

    files = {"scaling": plots.scaling_curves(report, path("png", tag="scaling"))}
    md = scale_markdown(report, {k: p.name for k, p in files.items()})
    files["json"] = write_json(report, path("json"))
    files["md"] = path("md")
    files["md"].write_text(md)
    return files
