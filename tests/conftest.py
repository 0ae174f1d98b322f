"""Shared fixtures. Kafka fixtures (a real Tansu broker process) live in
tests/fixtures_kafka.py; checkpoint fixtures (real HF-format models written
with save_pretrained) in tests/fixtures_models.py.

Every test belongs to one tier (markers registered in pyproject.toml), so each is easy to select:

- `unit`: pure: no broker, no process, no model (contracts, stages, policies, scheduler, sampling, output);
- `integration`: services or models in this process against one real broker, or real checkpoints loaded;
- `system`: real router and worker processes (or other child processes: `fleet up`, converters, clients).

A test marked with one keeps it; the rest are sorted here by what they use (their fixtures and what their
module brings in), so a new test lands in the right tier without anyone remembering to mark it.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures_kafka", "tests.fixtures_models", "tests.fixtures_smollm2"]

TIERS = ("unit", "integration", "system")
# fixtures that start real processes of the fleet (or need them)
SYSTEM_FIXTURES = {"simulated_fleet", "model_fleet", "smollm2", "quant_fleet"}
# names a module imports when its tests start processes themselves
SYSTEM_NAMES = {
    "FleetProcs",
    "FleetProcesses",
    "started",
    "Procs",
    "subprocess",
    "interrupt_fleet_up",
    "ProcessEngine",  # the engine in a child process
    "mp",
    "multiprocessing",
}
# fixtures and names that mean a real broker or a real model in this process
INTEGRATION_FIXTURES = {"broker", "tiny_checkpoint", "tiny_pair", "demo_models"}
INTEGRATION_NAMES = {
    "EmbeddedBroker",
    "AIOKafkaConsumer",
    "AIOKafkaProducer",
    "FleetClient",
    "from_pretrained",
    "AutoModelForCausalLM",
    "LlamaForCausalLM",
    "load_model",
    "build_tiny_pair",
    "load_bundle",
    "ContinuousEngine",
    "build_engine",
    "Pair",  # tests/worker/engine/helpers.py: the tiny target/draft checkpoints
    "own_tiny_target",
}


def tier_of(item: pytest.Item) -> str:
    own = [m.name for m in item.iter_markers() if m.name in TIERS]
    if own:
        return own[0]
    fixtures = set(getattr(item, "fixturenames", ()))
    names = set(vars(item.module)) if getattr(item, "module", None) is not None else set()  # type: ignore[attr-defined]
    if fixtures & SYSTEM_FIXTURES or names & SYSTEM_NAMES:
        return "system"
    if fixtures & INTEGRATION_FIXTURES or names & INTEGRATION_NAMES:
        return "integration"
    return "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        if not any(m.name == tier for m in item.iter_markers()):
            item.add_marker(getattr(pytest.mark, tier))
