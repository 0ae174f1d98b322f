from __future__ import annotations

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
