"""Where a benchmark run's files go and what they are called: one scheme for every writer, and the run metadata
(machine, date, commit) the names and the reports carry.

    benchmarks/results/<kind>_<machine>_<YYYYMMDD-HHMMSS>_<commit>[-dirty][_<tag>].<ext>

kind     the benchmark: lower case, words joined by "-" or "_" (serve, scale, smoke, engine, gpu-engine, router,
         complexity, compression, tenant_limits, priority_lanes, resilience)
machine  a label without "_" (default: arch-Ncpu, e.g. x86-64-2cpu; --machine overrides it)
date     when the run took its metadata, UTC
commit   the short hash, "-dirty" when tracked files had changes (outside a repository: nocommit)
tag      optional: one file of several from a run (a plot: cdf, rate, scaling) or a variant of the run (named)
ext      json (the data), md (the summary), png (a plot)

Every writer asks `result_path` for its names, so the scheme lives here alone; tests/benchmarks/common/test_results.py
checks the files already in benchmarks/results/ against RESULT_NAME. Folders in results/ (pipeline-ab/, ...) hold
hand-assembled comparisons of such runs, with a README.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
_KIND = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
_TAG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
RESULT_NAME = re.compile(
    r"(?P<kind>[a-z0-9]+(?:[-_][a-z0-9]+)*?)_(?P<machine>[A-Za-z0-9.-]+)_(?P<date>\d{8}-\d{6})"
    r"_(?P<commit>(?:[0-9a-f]{4,40}|nocommit)(?:-dirty)?)(?:_(?P<tag>[a-z0-9]+(?:-[a-z0-9]+)*))?\.(?P<ext>json|md|png)"
)


@dataclass(frozen=True, slots=True)
class RunMeta:
    machine: str  # short label used in file names, e.g. "x86-64-2cpu" or "h100"
    machine_detail: str  # processor, cores, accelerator as far as known
    date: str  # ISO 8601 UTC
    commit: str  # short hash, "+dirty" when the tree had changes
    python: str
    simulated: bool  # True when the engine was the simulated one: numbers are not a model's


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "x"


def result_stem(kind: str, meta: RunMeta, tag: str | None = None) -> str:
    """`<kind>_<machine>_<YYYYMMDD-HHMMSS>_<commit>[-dirty][_<tag>]`: the scheme above, without the extension."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"benchmark kind {kind!r}: lower-case words joined by '-' or '_'")
    if tag is not None and not _TAG.fullmatch(tag):
        raise ValueError(f"result tag {tag!r}: lower-case words joined by '-'")
    day = meta.date[:19].replace("-", "").replace(":", "").replace("T", "-")
    return f"{kind}_{_slug(meta.machine)}_{day}_{_slug(meta.commit)}" + (f"_{tag}" if tag else "")


def result_path(kind: str, meta: RunMeta, ext: str, *, tag: str | None = None, out_dir: Path | None = None) -> Path:
    """The file one run of `kind` writes, in `out_dir` (default benchmarks/results/, created if missing)."""
    if ext not in ("json", "md", "png"):
        raise ValueError(f"result extension {ext!r}: json, md or png")
    name = f"{result_stem(kind, meta, tag)}.{ext}"
    out = out_dir if out_dir is not None else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    return out / name


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(repo: Path | None = None) -> str:
    cwd = repo or Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "nocommit"


def collect_meta(*, machine: str | None = None, accelerator: str | None = None, simulated: bool) -> RunMeta:
    cores = os.cpu_count() or 0
    label = _slug(machine or f"{platform.machine()}-{cores}cpu")
    detail = f"{_cpu_model()}, {cores} cores" + (f", {accelerator}" if accelerator else ", no GPU")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return RunMeta(
        machine=label,
        machine_detail=detail,
        date=now.isoformat(),
        commit=git_commit(),
        python=platform.python_version(),
        simulated=simulated,
    )
