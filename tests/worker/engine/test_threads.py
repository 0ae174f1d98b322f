"""CPU thread count for the engine: the setting wins; auto leaves one core to the Kafka loop
and shares the rest among the workers started on the host."""

from __future__ import annotations

import os

import pytest

from fleet.settings import WORKERS_ON_HOST_ENV, ModelSettings
from worker.engine import cpu_threads


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def test_explicit_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKERS_ON_HOST_ENV, "8")
    assert cpu_threads(ModelSettings(name="m", path="p", torch_threads=3)) == 3


@pytest.mark.parametrize("workers", [1, 2, 64])
def test_auto_shares_cores_minus_one(monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    monkeypatch.setenv(WORKERS_ON_HOST_ENV, str(workers))
    assert cpu_threads(ModelSettings(name="m", path="p")) == max(1, (_cores() - 1) // workers)


def test_auto_without_env_is_one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WORKERS_ON_HOST_ENV, raising=False)
    assert cpu_threads(ModelSettings(name="m", path="p")) == max(1, _cores() - 1)
