"""`fleet worker --model NAME`: build the model's engine and run the worker loop."""

from __future__ import annotations

import asyncio
import threading

from fleet.preparation import prepare_gguf
from fleet.settings import Settings
from worker.engine import build_worker_engine
from worker.engine.process import StartCancelled
from worker.service import WorkerService


async def run_worker(settings: Settings, model_name: str, stop: asyncio.Event) -> None:
    model = settings.model(model_name)
    # a GGUF checkpoint is converted once per cache (workers started together wait for one conversion); a stop
    # meanwhile ends the conversion and this worker, leaving nothing half-written
    if not await prepare_gguf([model], settings.cache_path, stop):
        return
    cancel = threading.Event()  # a stop while the engine process loads kills it: Ctrl-C never waits for a load
    relay = asyncio.ensure_future(_set_when(stop, cancel))
    try:
        engine, tokenizer, max_model_len = await asyncio.to_thread(build_worker_engine, settings, model, cancel)
    except StartCancelled:
        return
    finally:
        relay.cancel()
    service = WorkerService(settings, model, engine, tokenizer, max_model_len=max_model_len)
    await service.run(stop)


async def _set_when(stop: asyncio.Event, cancel: threading.Event) -> None:
    await stop.wait()
    cancel.set()
