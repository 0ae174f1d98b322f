from __future__ import annotations

from pathlib import Path

import pytest

from fleet.settings import Quantization, load_settings


def test_defaults_serve_the_demo_pair() -> None:
    s = load_settings(env={})
    assert s.kafka.embedded and s.kafka.bootstrap == "127.0.0.1:9092"
    large = s.model("large")
    assert large.path == "demo:large" and large.draft_path == "demo:small"
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
