"""Shared fixtures. Kafka fixtures (a real Tansu broker process) live in
tests/fixtures_kafka.py; checkpoint fixtures (real HF-format models written
with save_pretrained) in tests/fixtures_models.py."""

pytest_plugins = ["tests.fixtures_kafka", "tests.fixtures_models", "tests.fixtures_smollm2"]
