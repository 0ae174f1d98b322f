from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from fleet.cli import app
from fleet.health import beat, check


def test_fresh_ready_stale_and_missing(tmp_path: Path) -> None:
    f = tmp_path / "health.json"
    assert not check(f, max_age_s=5, need_ready=False)[0]
    beat(str(f), ready=False)
    assert check(f, max_age_s=5, need_ready=False)[0]
    assert not check(f, max_age_s=5, need_ready=True)[0]
    beat(str(f), ready=True, worker="w")
    assert check(f, max_age_s=5, need_ready=True)[0]
    f.write_text(json.dumps({"ts": time.time() - 60, "ready": True}))
    ok, why = check(f, max_age_s=30, need_ready=False)
    assert not ok and "stale" in why


def test_cli_exit_codes(tmp_path: Path) -> None:
    f = tmp_path / "h.json"
    runner = CliRunner()
    assert runner.invoke(app, ["health", "--file", str(f)]).exit_code == 1
    beat(str(f), ready=True)
    assert runner.invoke(app, ["health", "--file", str(f), "--ready"]).exit_code == 0
