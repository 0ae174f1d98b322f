"""The manual builds strictly: a dead link, a missing anchor, a page left out of the navigation or a snippet
whose file is gone fails the suite (`mkdocs build --strict`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def test_mkdocs_builds_strictly(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    clients = (tmp_path / "site" / "clients" / "index.html").read_text()
    assert "get_watermark_offsets" in clients and "kafkajs-snappy" in clients  # the example files were included


def test_a_dead_link_fails_the_build(tmp_path: Path) -> None:
    """The check can fail: the same configuration on a copy of the docs with one broken link."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[gone](nowhere.md)\n")
    cfg = tmp_path / "mkdocs.yml"
    text = (ROOT / "mkdocs.yml").read_text().split("nav:")[0] + "nav:\n  - Home: index.md\n"
    cfg.write_text(text.replace("docs_dir: docs", f"docs_dir: {docs}"))
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(cfg), "--site-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "nowhere.md" in out.stdout + out.stderr
