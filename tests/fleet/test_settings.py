from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from fleet.settings import SMOLLM2_135M_INSTRUCT, Quantization, Settings, TenantSettings, load_settings


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


# -- every setting's range on its declaration (issue 24, item 4) -----------------------------------------------

_MODEL = '[[models]]\nname = "m"\npath = "none"\nengine = "simulated"\n'


@pytest.mark.unit
@pytest.mark.parametrize(
    ("toml", "key", "value", "allowed"),
    [
        ("[limits]\nmax_timeout_ms = -1", "limits.max_timeout_ms", "-1", "value >= 1"),
        ("[limits]\nmin_temperature = 0.0", "limits.min_temperature", "0.0", "0 < value <= 2"),
        ("[kafka]\nembedded_port = 70000", "kafka.embedded_port", "70000", "1 <= value <= 65535"),
        ("[kafka]\nembedded_port = 0", "kafka.embedded_port", "0", "1 <= value <= 65535"),
        ("[kafka]\nintake_partitions = 0", "kafka.intake_partitions", "0", "value >= 1"),
        ("[kafka]\nreplication_factor = 0", "kafka.replication_factor", "0", "value >= 1"),
        ("[kafka]\nmax_request_bytes = 100", "kafka.max_request_bytes", "100", "value >= 1024"),
        ("[latency]\nfetch_max_wait_ms = -5", "latency.fetch_max_wait_ms", "-5", "value >= 0"),
        ("[latency]\nsession_timeout_ms = -1", "latency.session_timeout_ms", "-1", "value >= 1"),
        ("[latency]\nrequest_timeout_ms = 0", "latency.request_timeout_ms", "0", "value >= 1"),
        ("[latency]\nchunk_max_tokens = 0", "latency.chunk_max_tokens", "0", "value >= 1"),
        (_MODEL + "price_per_1k_prompt = -0.001", "models[0].price_per_1k_prompt", "-0.001", "value >= 0"),
        (_MODEL + "max_running = 0", "models[0].max_running", "0", "value >= 1"),
        (_MODEL + "torch_threads = -1", "models[0].torch_threads", "-1", "value >= 0"),
        (_MODEL + "simulated_tokens_per_s = 0.0", "models[0].simulated_tokens_per_s", "0.0", "value > 0"),
        ("[router]\nbreaker_error_rate = 1.5", "router.breaker_error_rate", "1.5", "0 <= value <= 1"),
        ("[router]\nbreaker_probes = 0", "router.breaker_probes", "0", "value >= 1"),
        ("[router]\nest_tokens_per_s = -200.0", "router.est_tokens_per_s", "-200.0", "value > 0"),
        ("[router]\nbreaker_window_s = nan", "router.breaker_window_s", "nan", "value > 0"),
        (
            '[[router.tiers]]\nname = "a"\nmodel = "m"\n[[router.tiers]]\nname = "b"\nmodel = "m"\ncheap_share = 2.0',
            "router.tiers[1].cheap_share",
            "2.0",
            "0 <= value <= 1",
        ),
        (
            '[[router.tiers]]\nname = "a"\nmodel = "m"\nmax_score = -0.5',
            "router.tiers[0].max_score",
            "-0.5",
            "value >= 0",
        ),
        ("[worker]\nbatch_reserve = 1.5", "worker.batch_reserve", "1.5", "0 <= value <= 1"),
        ("[worker]\nmax_attempts = 0", "worker.max_attempts", "0", "value >= 1"),
        ("[worker]\ndrain_grace_s = -30.0", "worker.drain_grace_s", "-30.0", "value >= 0"),
        ("[worker]\nengine_watchdog_s = 0.0", "worker.engine_watchdog_s", "0.0", "value > 0"),
        ('[[tenants]]\nname = "a"\nrequests_per_s = 0.0', "tenants[0].requests_per_s", "0.0", "value > 0"),
        ('[[tenants]]\nname = "a"\ndaily_cost = -1.0', "tenants[0].daily_cost", "-1.0", "value >= 0"),
        ('[[tenants]]\nname = "a"\nmax_tokens = 0', "tenants[0].max_tokens", "0", "value >= 1"),
    ],
)
def test_a_value_out_of_range_stops_the_load_with_one_line(
    tmp_path: Path, toml: str, key: str, value: str, allowed: str
) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text(toml + "\n")
    with pytest.raises(ValueError) as err:
        load_settings(cfg, env={})
    assert str(err.value) == f"{key} = {value} is out of range: expected {allowed}"


@pytest.mark.system
def test_a_router_with_a_port_out_of_range_stops_at_start_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text("[kafka]\nembedded_port = 70000\n")
    out = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "router", "--config", str(cfg)], capture_output=True, text=True, timeout=120
    )
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert out.returncode == 2 and lines == [
        "fleet: kafka.embedded_port = 70000 is out of range: expected 1 <= value <= 65535"
    ], lines


@pytest.mark.unit
@pytest.mark.parametrize(
    ("var", "raw", "line"),
    [
        ("FLEET_EMBEDDED_PORT", "70000", "kafka.embedded_port = 70000 (from FLEET_EMBEDDED_PORT) is out of range"),
        ("FLEET_MODEL_PARTITIONS", "0", "kafka.model_partitions = 0 (from FLEET_MODEL_PARTITIONS) is out of range"),
    ],
)
def test_a_value_out_of_range_from_the_environment_names_its_variable(var: str, raw: str, line: str) -> None:
    with pytest.raises(ValueError) as err:
        load_settings(env={var: raw})
    assert str(err.value).startswith(line) and "\n" not in str(err.value)


@pytest.mark.unit
def test_a_value_of_the_wrong_type_is_still_one_line() -> None:
    with pytest.raises(ValueError) as err:
        load_settings(env={"FLEET_EMBEDDED_PORT": "port"})
    assert "kafka.embedded_port" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.unit
def test_every_default_lies_in_its_range() -> None:
    """A struct built in Python skips the declared ranges; encoding the defaults and loading them back checks
    every one of them (the default models and tiers too)."""
    assert load_settings(None, env={}) == Settings()
    for value, cls in [(Settings(), Settings), (TenantSettings(name="t"), TenantSettings)]:
        assert msgspec.convert(msgspec.to_builtins(value), cls) == value


Number = msgspec.inspect.IntType | msgspec.inspect.FloatType


def _numbers(t: msgspec.inspect.Type, where: str, seen: set[type]) -> list[tuple[str, Number]]:
    if isinstance(t, Number):
        return [(where, t)]
    if isinstance(t, msgspec.inspect.UnionType):
        return [n for u in t.types for n in _numbers(u, where, seen)]
    if isinstance(t, msgspec.inspect.ListType):
        return _numbers(t.item_type, where + "[]", seen)
    if isinstance(t, msgspec.inspect.DictType):
        return _numbers(t.value_type, where + "[...]", seen)
    if isinstance(t, msgspec.inspect.StructType) and t.cls not in seen:
        seen.add(t.cls)
        return [n for f in t.fields for n in _numbers(f.type, f"{where}.{f.name}".lstrip("."), seen)]
    return []


@pytest.mark.unit
def test_every_numeric_setting_declares_its_range() -> None:
    """A new number among the settings comes with its range (`[limits]`, declared in contracts/validation.py, too)."""
    numbers = _numbers(msgspec.inspect.type_info(Settings), "", set())
    assert len(numbers) >= 80
    unbounded = [where for where, t in numbers if (t.ge, t.gt, t.le, t.lt) == (None, None, None, None)]
    assert unbounded == []


@pytest.mark.system
def test_infrastructure_failures_are_one_line_and_exit_3(tmp_path: Path) -> None:
    """A busy port and an unreachable broker: no traceback, a line that says what failed, exit 3; --debug shows
    the traceback (issue 24: these printed 80 to 130 lines)."""
    import socket

    def fleet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fleet.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **(env or {})},
        )

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = fleet("broker", "--port", str(port))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 3 and lines == [lines[-1]] and "already in use" in lines[-1], out.stderr
    out = fleet("generate", "hi", "--timeout-s", "5", env={"FLEET_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 3 and "Traceback" not in out.stderr, out.stderr
    assert last.startswith("fleet: KafkaConnectionError") and "--debug" in last
    debug = fleet("--debug", "generate", "hi", env={"FLEET_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr
