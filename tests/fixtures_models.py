"""Checkpoint fixtures: real Hugging Face-format models written with save_pretrained and loaded
with from_pretrained by the code under test."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.demo_models import DemoModels, build_tiny_checkpoint, ensure_demo_models


@dataclass(frozen=True)
class TinyPair:
    target: Path
    draft: Path  # smaller, same tokenizer


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "target", seed=0)


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> TinyPair:
    d = tmp_path_factory.mktemp("tiny-pair")
    target = build_tiny_checkpoint(d / "target", seed=0, hidden_size=64, num_layers=2, num_heads=4)
    draft = build_tiny_checkpoint(d / "draft", seed=1, hidden_size=32, num_layers=1, num_heads=2, vocab_from=target)
    return TinyPair(target, draft)


@pytest.fixture(scope="session")
def demo_models() -> DemoModels:
    """The trained demo pair (built once per cache directory: minutes the first time)."""
    cache = Path(os.environ.get("FLEET_TEST_CACHE_DIR", "~/.cache/llm-fleet-test")).expanduser()
    return ensure_demo_models(cache, progress=False)
