"""`fleet worker --model NAME`: build the model's engine and run the worker loop."""

from __future__ import annotations

import asyncio
import threading

from prometheus_client import CollectorRegistry

from fleet.metrics import Probes, new_registry, serve
from fleet.preparation import prepare_gguf
from fleet.settings import Settings
from worker.engine import build_worker_engine
from worker.engine.process import StartCancelled
from worker.metrics import WorkerMetrics
from worker.service import WorkerService, new_worker_id


async def run_worker(settings: Settings, model_name: str, stop: asyncio.Event) -> None:
    # /metrics, /livez and /readyz from the start (when on): a scrape during a long load sees the process, the
    # probes say "loading the model" (neither live nor ready until the status loop beats)
    registry = new_registry()
    probes = Probes(settings.metrics)
    probes.phase("loading the model")
    server = serve(settings.metrics, registry, probes)
    try:
        await _run_worker(settings, model_name, stop, registry, probes if server is not None else None)
    finally:
        if server is not None:
            server.close()


async def _run_worker(
    settings: Settings, model_name: str, stop: asyncio.Event, registry: CollectorRegistry, probes: Probes | None
) -> None:
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
    worker_id = new_worker_id(model.name)
    metrics = None
    if probes is not None:  # metrics on
        metrics = WorkerMetrics(
            registry,
            settings.metrics.prefix,
            model,
            worker_id,
            max_model_len,
            tenants=[t.name for t in settings.tenants],
            tiers=[t.name for t in settings.router.tiers],
        )
    service = WorkerService(
        settings,
        model,
        engine,
        tokenizer,
        max_model_len=max_model_len,
        worker_id=worker_id,
        metrics=metrics,
        probes=probes,
    )
    await service.run(stop)


async def _set_when(stop: asyncio.Event, cancel: threading.Event) -> None:
    await stop.wait()
    cancel.set()
