"""The alerts in k8s/monitoring/, tested with Prometheus' own promtool (Debian's `prometheus` package; `make test`
installs it where it runs as root, elsewhere these tests say they skip): `promtool check rules` on the rules as
shipped, `promtool test rules` on tests/k8s/alert_rules_test.yaml, where every alert has a case that fires and one
that stays quiet. Each alert's runbook_url names a section of docs/runbooks.md."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit  # promtool on files: no broker, no fleet

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "k8s" / "monitoring"
CASES = Path(__file__).with_name("alert_rules_test.yaml")
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in sorted(MONITORING.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "PrometheusRule":
                groups += doc["spec"]["groups"]
    return groups


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule_groups() for r in g["rules"] if "alert" in r}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install prometheus; make test does so as root)")
    return path


def test_promtool_checks_the_rules_as_shipped(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups()}))
    out = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_fires_and_quiets_every_alert(tmp_path: Path) -> None:
    tool = promtool()
    groups = rule_groups()
    for g in groups:  # annotations are templates of the value: checked above, left out of the comparisons here
        for r in g["rules"]:
            r.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(CASES, tmp_path / CASES.name)
    out = subprocess.run([tool, "test", "rules", CASES.name], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = yaml.safe_load(CASES.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for t in case["alert_rule_test"]:
            (fires if t["exp_alerts"] else quiet).add(t["alertname"])
    names = set(alerts())
    assert names and fires == names and quiet == names, (names - fires, names - quiet)


def test_every_alert_has_a_runbook_section() -> None:
    headings = {ln[3:].strip().lower() for ln in RUNBOOKS.read_text().splitlines() if ln.startswith("## ")}
    for name, rule in alerts().items():
        url = rule["annotations"]["runbook_url"]
        anchor = url.rsplit("#", 1)[1]
        assert anchor == name.lower() and anchor in headings, (name, url)
