"""Checkpoint fixtures: real HF-format models written with save_pretrained.

`tiny_checkpoint` and `tiny_pair` are random-init and take well under a second; `demo_models` is the
trained demo pair, built once into FLEET_TEST_CACHE_DIR (default ~/.cache/llm-fleet-test): minutes the
first time, so only tests that need models that really agree with each other should use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.demo_models import DemoModels, build_tiny_checkpoint, ensure_demo_models


@dataclass(frozen=True, slots=True)
class TinyPair:
    """A tiny target and a smaller tiny draft with one shared tokenizer (random weights)."""

    target: Path
    draft: Path


def demo_cache_dir() -> Path:
    """Where the trained demo models for tests live (kept between runs: building takes minutes)."""
    return Path(os.environ.get("FLEET_TEST_CACHE_DIR", "~/.cache/llm-fleet-test")).expanduser()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init 2-layer Llama (hidden 64) with the small test tokenizer."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "target", seed=0)


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> TinyPair:
    """A tiny target (2 layers, hidden 64) and draft (1 layer, hidden 32) sharing the target's vocab."""
    root = tmp_path_factory.mktemp("tiny-pair")
    target = build_tiny_checkpoint(root / "target", seed=0, hidden_size=64, num_layers=2, num_heads=4)
    draft = build_tiny_checkpoint(root / "draft", seed=1, hidden_size=32, num_layers=1, num_heads=2, vocab_from=target)
    return TinyPair(target=target, draft=draft)


def demo_models_ready() -> bool:
    """A trained demo pair is in the test cache already, or FLEET_TEST_BUILD_DEMO=1 asks to build it here."""
    return os.environ.get("FLEET_TEST_BUILD_DEMO") == "1" or any(demo_cache_dir().glob("demo-v*/demo.json"))


# For the few tests that need the trained demo pair (models that really agree): the full recipe takes
# about 5 minutes on 2 cores, more than the whole rest of the suite, so a clean clone's `make test` skips
# them (saying why) unless the pair is already built or FLEET_TEST_BUILD_DEMO=1.
needs_demo_models = pytest.mark.skipif(
    not demo_models_ready(),
    reason="trained demo models not built in FLEET_TEST_CACHE_DIR; set FLEET_TEST_BUILD_DEMO=1 to build them here",
)
DEMO_BUILD_TIMEOUT_S = 1200  # the first such test may build the pair (minutes, more on a busy machine)


@pytest.fixture(scope="session")
def demo_models() -> DemoModels:
    """The trained demo pair (`large` target, `small` draft); built on first use, then reused."""
    return ensure_demo_models(demo_cache_dir(), progress=False)
