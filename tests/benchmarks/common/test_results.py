"""One naming scheme for every file in benchmarks/results/ (benchmarks/common/results.py), and the files already
there follow it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.common.results import RESULT_NAME, RESULTS_DIR, RunMeta, result_path, result_stem

META = RunMeta(
    machine="x86_64 2cpu",  # slugged in the name: no "_" may reach it
    machine_detail="AMD EPYC, 2 cores, no GPU",
    date="2026-12-07T17:10:09+00:00",
    commit="4356c43+dirty",
    python="3.11.7",
    simulated=False,
)
# router runs before the scheme put a variant after "_" wrote it onto the commit: kept where they are, not renamed
LEGACY = re.compile(r"router_[A-Za-z0-9.-]+_\d{8}-\d{6}_[0-9a-f]+(?:-dirty)?-named\.(?:json|md)")


def test_a_name_carries_kind_machine_date_commit_and_tag_and_reads_back() -> None:
    assert result_stem("router", META) == "router_x86-64-2cpu_20261207-171009_4356c43-dirty"
    name = result_stem("priority_lanes", META, tag="named") + ".png"
    m = RESULT_NAME.fullmatch(name)
    assert m, name
    assert m.group("kind", "machine", "date", "commit", "tag", "ext") == (
        "priority_lanes", "x86-64-2cpu", "20261207-171009", "4356c43-dirty", "named", "png",
    )  # fmt: skip
    assert RESULT_NAME.fullmatch(result_stem("gpu-engine-tiny", META) + ".json")


def test_result_path_makes_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    p = result_path("serve", META, "md", tag="cdf", out_dir=out)
    assert p.parent == out and out.is_dir() and p.name.endswith("_4356c43-dirty_cdf.md")


@pytest.mark.parametrize(
    ("kind", "tag", "ext"),
    [("Serve", None, "json"), ("serve_", None, "json"), ("a b", None, "md"), ("serve", "cdf_plot", "png"),
     ("serve", "Rate", "png"), ("serve", None, "txt")],
)  # fmt: skip
def test_a_name_outside_the_scheme_is_refused(tmp_path: Path, kind: str, tag: str | None, ext: str) -> None:
    with pytest.raises(ValueError):
        result_path(kind, META, ext, tag=tag, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_every_result_file_follows_the_scheme() -> None:
    """Folders (pipeline-ab/, ...) are hand-assembled comparisons with a README; every file beside them is a run."""
    names = sorted(p.name for p in RESULTS_DIR.iterdir() if p.is_file())
    assert len(names) > 50
    odd = [n for n in names if not RESULT_NAME.fullmatch(n) and not LEGACY.fullmatch(n)]
    assert not odd, f"not <kind>_<machine>_<YYYYMMDD-HHMMSS>_<commit>[-dirty][_<tag>].<ext>: {odd}"
