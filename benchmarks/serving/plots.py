"""PNG plots (matplotlib with the Agg backend, imported only when a plot is drawn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.serving.schema import ScaleReport, ServingReport

PATH_LABELS = {
    "fleet": "fleet through Kafka",
    "inprocess": "same engine in process",
    "floor": "raw Kafka floor (3-hop echo)",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _cdf(ax: Any, values: list[float], label: str) -> None:
    if not values:
        return
    xs = np.sort(np.asarray(values))
    ys = np.arange(1, xs.size + 1) / xs.size
    ax.step(xs, ys, where="post", label=f"{label} (n={xs.size})")


def latency_cdfs(report: ServingReport, path: Path) -> Path:
    """TTFT, TPOT and E2EL CDFs of the headline point, the three paths on each panel."""
    plt = _pyplot()
    point = report.points[report.headline]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (field, title) in zip(axes, (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("e2el_ms", "E2EL")), strict=True):
        for key, samples in point.samples.items():
            _cdf(ax, getattr(samples, field), PATH_LABELS.get(key, key))
        ax.set_xscale("log")
        ax.set_xlabel(f"{title} (ms, log scale)")
        ax.set_ylabel("fraction of requests")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(title)
        ax.legend(fontsize=7, loc="lower right")
    sim = " - SIMULATED engine" if report.meta.simulated else ""
    fig.suptitle(f"Latency CDFs, {point.label}{sim} ({report.meta.machine}, {report.meta.commit})", fontsize=10)
    fig.tight_layout()
    return _save(fig, plt, path)


def rate_curves(report: ServingReport, path: Path) -> Path:
    """Throughput and TTFT (p50, p99) against offered request rate, fleet vs in-process vs floor."""
    plt = _pyplot()
    pts = [p for p in report.points if p.request_rate is not None] or report.points
    xs = [p.request_rate if p.request_rate is not None else p.fleet.request_throughput for p in pts]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(xs, [p.fleet.request_throughput for p in pts], "o-", label="fleet req/s")
    ax1b = ax1.twinx()
    ax1b.plot(xs, [p.fleet.output_throughput for p in pts], "s--", color="tab:orange", label="fleet out tok/s")
    ax1.set_xlabel("offered request rate (req/s)")
    ax1.set_ylabel("completed req/s")
    ax1b.set_ylabel("output tokens/s")
    ax1.set_title("Throughput")
    ax1.grid(True, alpha=0.3)
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax1b.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    for key, style in (("fleet", "-"), ("inprocess", "--"), ("floor", ":")):
        series = [getattr(p, key) for p in pts]
        if any(s is None for s in series):
            continue
        ax2.plot(xs, [s.ttft.median for s in series], "o" + style, label=f"{PATH_LABELS[key]} p50")
        ax2.plot(xs, [s.ttft.p99 for s in series], "^" + style, label=f"{PATH_LABELS[key]} p99")
    ax2.set_yscale("log")
    ax2.set_xlabel("offered request rate (req/s)")
    ax2.set_ylabel("TTFT (ms, log scale)")
    ax2.set_title("TTFT against request rate")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7)
    sim = " - SIMULATED engine" if report.meta.simulated else ""
    fig.suptitle(f"Against request rate{sim} ({report.meta.machine}, {report.meta.commit})", fontsize=10)
    fig.tight_layout()
    return _save(fig, plt, path)


def scaling_curves(report: ScaleReport, path: Path) -> Path:
    """Throughput and TTFT against worker processes, a line per partition count; labelled SIMULATED."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for parts in sorted({p.partitions for p in report.points}):
        pts = sorted((p for p in report.points if p.partitions == parts), key=lambda p: p.workers)
        ws = [p.workers for p in pts]
        ax1.plot(ws, [p.metrics.output_throughput for p in pts], "o-", label=f"{parts} partitions")
        ax2.plot(ws, [p.metrics.ttft.median for p in pts], "o-", label=f"{parts} partitions, p50")
        ax2.plot(ws, [p.metrics.ttft.p99 for p in pts], "^--", label=f"{parts} partitions, p99")
    for ax, ylabel in ((ax1, "output tokens/s"), (ax2, "TTFT (ms, log scale)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("worker processes")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax2.set_yscale("log")
    ax1.set_title("Throughput (SIMULATED engine)")
    ax2.set_title("TTFT (SIMULATED engine)")
    fig.suptitle(
        f"Fleet scaling - SIMULATED engine, no model ({report.meta.machine}, {report.meta.commit})",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
