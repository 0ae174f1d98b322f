"""Engine fixtures: a tiny target, a draft that agrees with it often but not always, and
engines built on them. Checkpoints are real HF directories written with save_pretrained."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from fleet.settings import ModelSettings
from tests.worker.engine.helpers import Pair, noisy_copy, own_tiny_target, tied_tiny_target
from worker.engine.continuous import ContinuousEngine, EngineConfig
from worker.loader import ModelBundle, load_bundle


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a shared CPU OpenMP's spinning barrier
    makes every small matmul slow when other processes load the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def engine_pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """A tiny target whose greedy continuations are varied (a tied random model only repeats itself,
    which would make batched-vs-unbatched and speculative-vs-plain comparisons weak), and a noisy
    copy of it as the draft, so some proposals are accepted and some rejected."""
    root = tmp_path_factory.mktemp("engine_pair")
    target = own_tiny_target(root / "target")
    return Pair(target, noisy_copy(target, root / "draft", scale=0.02))


@pytest.fixture(scope="session")
def bundle(engine_pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    ms = ModelSettings(name="t", path=str(engine_pair.target), draft_path=str(engine_pair.draft))
    return load_bundle(ms, tmp_path_factory.mktemp("cache"))


@pytest.fixture
def make_engine() -> Callable[..., ContinuousEngine]:
    def make(b: ModelBundle, **kw: object) -> ContinuousEngine:
        return ContinuousEngine(b, EngineConfig(**{"seed": 0, **kw}))  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def repeating_bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """A model that repeats itself (prompt lookup finds proposals in its output), with a noisy draft."""
    root = tmp_path_factory.mktemp("repeating")
    path = tied_tiny_target(root / "m")
    draft = noisy_copy(path, root / "d", scale=0.05)
    return load_bundle(ModelSettings(name="r", path=str(path), draft_path=str(draft)), root)
