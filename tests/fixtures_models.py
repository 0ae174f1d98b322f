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


@pytest.fixture(scope="session")
def demo_models() -> DemoModels:
    """The trained demo pair (`large` target, `small` draft); built on first use, then reused."""
    return ensure_demo_models(demo_cache_dir(), progress=False)
