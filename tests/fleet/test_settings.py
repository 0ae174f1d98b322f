from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.settings import SMOLLM2_135M_INSTRUCT, Quantization, load_settings


def test_defaults_serve_two_tiers_of_the_real_model() -> None:
    s = load_settings(env={})
    assert s.kafka.embedded and s.kafka.bootstrap == "127.0.0.1:9092"
    small, large = s.model("small"), s.model("large")
    assert small.path == large.path == SMOLLM2_135M_INSTRUCT
    assert small.quantization is Quantization.NF4 and large.quantization is Quantization.NONE
    assert large.ngram_speculation and large.draft_path is None
    assert small.price_per_1k_completion < large.price_per_1k_completion  # the cheap tier is cheaper
    assert s.kafka.topics.worker_group("large") == "llm-worker-large" and s.kafka.topics.router_group == "llm-router"


def test_toml_and_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text('[kafka]\ntopic_prefix = "x"\n[[models]]\nname = "m"\npath = "/m"\nquantization = "nf4"\n')
    s = load_settings(cfg, env={"FLEET_KAFKA_BOOTSTRAP": "k1:9093,k2:9093", "FLEET_KAFKA_SASL_PASSWORD": "123"})
    assert s.kafka.bootstrap == "k1:9093,k2:9093" and not s.kafka.embedded
    assert s.kafka.sasl_password == "123"  # kept a string, not parsed as a number
    assert s.model("m").quantization is Quantization.NF4 and s.kafka.topics.requests == "x.requests"


def test_a_misspelled_key_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text('[kafka]\ntopic_prefx = "x"\n')
    with pytest.raises(ValueError, match="topic_prefx"):
        load_settings(cfg, env={})


def test_instance_ids_from_the_environment_stay_strings() -> None:
    """A pod name like "007" must not become the int 7; an empty variable means dynamic membership."""
    s = load_settings(env={"FLEET_ROUTER_INSTANCE_ID": "007", "FLEET_WORKER_INSTANCE_ID": "worker-0"})
    assert s.router.group_instance_id == "007" and s.worker.group_instance_id == "worker-0"
    empty = load_settings(env={"FLEET_ROUTER_INSTANCE_ID": "", "FLEET_WORKER_INSTANCE_ID": ""})
    assert empty.router.group_instance_id is None and empty.worker.group_instance_id is None


def test_request_timeout_is_a_latency_setting(tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text("[latency]\nrequest_timeout_ms = 3000\n")
    assert load_settings(cfg, env={}).latency.request_timeout_ms == 3000
    assert load_settings(env={}).latency.request_timeout_ms == 15_000


def test_the_demo_pair_configuration_loads() -> None:
    s = load_settings(Path(__file__).resolve().parents[2] / "configs" / "demo-pair.toml", env={})
    large = s.model("large")
    assert large.path == "demo:large" and large.draft_path == "demo:small" and s.model("small").path == "demo:small"


# -- tenant names and reply prefixes cannot overlap (issue 23) ------------------------------------------------


def _tenants_config(path: Path, tenants: str) -> Path:
    path.write_text('[[models]]\nname = "m"\npath = "none"\nengine = "simulated"\n' + tenants)
    return path


@pytest.mark.unit
@pytest.mark.parametrize("name", ["acme.eu", "acme_eu", "a b", "", "x" * 101, "acme/eu"])
def test_a_tenant_name_with_a_separator_is_refused(tmp_path: Path, name: str) -> None:
    cfg = _tenants_config(tmp_path / "f.toml", f'[[tenants]]\nname = "{name}"\n')
    with pytest.raises(ValueError, match="letters, digits and '-' only"):
        load_settings(cfg, env={})


@pytest.mark.unit
def test_names_that_differ_by_a_dash_keep_their_default_prefixes_apart(tmp_path: Path) -> None:
    cfg = _tenants_config(tmp_path / "f.toml", '[[tenants]]\nname = "acme"\n[[tenants]]\nname = "acme-eu"\n')
    s = load_settings(cfg, env={})
    assert [s.reply_prefixes(t) for t in s.tenants] == [["llm.replies.acme."], ["llm.replies.acme-eu."]]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ('reply_prefixes = ["svc.replies."]', 'reply_prefixes = ["svc.replies.eu."]'),  # one covers the other
        ('reply_prefixes = ["svc.a"]', 'reply_prefixes = ["svc.a2."]'),  # no separator at the end
        ('reply_prefixes = ["llm.replies.b"]', ""),  # a prefix over b's default `llm.replies.b.`
        ('reply_prefixes = ["svc.x."]', 'reply_prefixes = ["svc.x."]'),  # the same prefix twice
    ],
)
def test_a_reply_prefix_that_covers_another_tenants_is_refused(tmp_path: Path, a: str, b: str) -> None:
    cfg = _tenants_config(tmp_path / "f.toml", f'[[tenants]]\nname = "a"\n{a}\n[[tenants]]\nname = "b"\n{b}\n')
    with pytest.raises(ValueError, match="covers tenant"):
        load_settings(cfg, env={})


@pytest.mark.system
def test_a_router_with_overlapping_tenants_stops_at_start_with_one_line(tmp_path: Path) -> None:
    cfg = _tenants_config(
        tmp_path / "f.toml",
        '[[tenants]]\nname = "acme"\nreply_prefixes = ["svc.acme"]\n'
        '[[tenants]]\nname = "acme-eu"\nreply_prefixes = ["svc.acme-eu."]\n',
    )
    out = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "router", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FLEET_KAFKA_BOOTSTRAP": "127.0.0.1:1"},
    )
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert out.returncode != 0 and len(lines) == 1, lines
    assert "'acme'" in lines[0] and "covers tenant 'acme-eu'" in lines[0]


# -- CLI manners (issue 24, item 5) ----------------------------------------------------------------------------


@pytest.mark.system
def test_the_cli_has_a_version_a_short_help_and_plain_help_text() -> None:
    def fleet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fleet.cli", *args], capture_output=True, text=True, timeout=60)

    version = fleet("--version")
    assert version.returncode == 0 and version.stdout.startswith("llm-fleet ")
    short, long = fleet("-h"), fleet("--help")
    assert short.returncode == 0 and short.stdout == long.stdout and "Commands:" in short.stdout
    tenants = fleet("tenants", "-h")
    assert tenants.returncode == 0 and "[[tenants]]" in tenants.stdout  # rich markup once ate it: "the [] config"
    bad = fleet("tenants", "add", "acme.eu")
    assert bad.returncode == 2 and "letters, digits and '-'" in bad.stderr
