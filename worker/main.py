"""`fleet worker --model NAME`: build the model's engine and run the worker loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import structlog

from fleet.settings import EngineKind, ModelSettings, Settings
from worker.engine.api import Engine
from worker.engine.simulated import ByteTokenizer, SimulatedEngine
from worker.service import WorkerService

log = structlog.get_logger(__name__)


@dataclass
class BuiltEngine:
    engine: Engine
    tokenizer: Any
    max_model_len: int


def _simulated(model: ModelSettings, settings: Settings) -> BuiltEngine:
    engine = SimulatedEngine(tokens_per_s=model.simulated_tokens_per_s, max_running=model.max_running)
    return BuiltEngine(engine, ByteTokenizer(), model.max_model_len)


def _continuous(model: ModelSettings, settings: Settings) -> BuiltEngine:
    from worker.engine import build_continuous_engine  # torch and transformers load only here

    engine, tokenizer, max_len = build_continuous_engine(model, settings.cache_path)
    return BuiltEngine(engine, tokenizer, max_len)


ENGINE_BUILDERS = {EngineKind.SIMULATED: _simulated, EngineKind.CONTINUOUS: _continuous}


def build_engine(model: ModelSettings, settings: Settings) -> BuiltEngine:
    return ENGINE_BUILDERS[model.engine](model, settings)


async def run_worker(settings: Settings, model_name: str, stop: asyncio.Event) -> None:
    model = settings.model(model_name)
    built = await asyncio.to_thread(build_engine, model, settings)
    service = WorkerService(settings, model, built.engine, built.tokenizer, max_model_len=built.max_model_len)
    await service.run(stop)
