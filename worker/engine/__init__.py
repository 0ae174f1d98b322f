"""The worker's inference engine: a pure scheduler (scheduler.py), a torch-only model
runner (runner.py, speculative.py, sampling.py, kv_cache.py) and the engine that
ties them behind the interface in api.py (continuous.py).

Importing this package loads neither torch nor transformers; the builders import
what they need when called.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from fleet.settings import WORKERS_ON_HOST_ENV, EngineKind, ModelSettings, Settings

if TYPE_CHECKING:
    from worker.engine.api import Engine
    from worker.engine.continuous import EngineConfig

BuiltEngine = tuple["Engine", Any, int]  # (engine, tokenizer, max_model_len)


def engine_config(model: ModelSettings, *, seed: int | None = None) -> EngineConfig:
    """The engine's knobs from the model's settings."""
    from worker.engine.continuous import EngineConfig

    return EngineConfig(
        max_running=model.max_running,
        max_batch_tokens=model.max_batch_tokens,
        prefill_chunk_tokens=model.prefill_chunk_tokens,
        num_speculative_tokens=model.num_speculative_tokens,
        spec_max_batch_size=model.spec_max_batch_size,
        ngram_speculation=model.ngram_speculation,
        seed=seed,
    )


def cpu_threads(model: ModelSettings) -> int:
    """Threads for the model's CPU math: the setting, or by default the cores this process may use
    minus one, divided among the workers started on this host.

    One core stays with the Kafka loop, the broker and the router: an OpenMP team spread over every
    core of a small machine spins against them and slows both (see docs/latency.md).
    """
    if model.torch_threads > 0:
        return model.torch_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, int(os.environ.get(WORKERS_ON_HOST_ENV, "1") or 1))
    return max(1, (cores - 1) // workers)


def build_continuous_engine(model: ModelSettings, cache_dir: Path) -> BuiltEngine:
    """Load the model (and its draft) and build the continuous-batching engine around it."""
    import torch

    from worker.engine.continuous import ContinuousEngine
    from worker.loader import load_bundle

    threads = cpu_threads(model)
    torch.set_num_threads(threads)  # process-wide; the engine steps in a pool thread
    structlog.get_logger(__name__).info("engine.cpu_threads", threads=threads, model=model.name)
    bundle = load_bundle(model, cache_dir)
    engine = ContinuousEngine(bundle, engine_config(model))
    warm_up(engine, bundle.vocab_size)
    return engine, bundle.tokenizer, bundle.max_model_len


def warm_up(engine: Engine, vocab_size: int, prompt_tokens: int = 16, max_tokens: int = 4) -> None:
    """One short greedy request through the engine before it reports ready: torch sets up its kernels and
    buffers on first use, which would otherwise land on the first real request (`fleet up`'s smoke request
    on SmolLM2-135M, 2 CPU cores, a benchmark running alongside both times: TTFT 1289 ms cold, 469 ms warm)."""
    from worker.engine.api import EngineRequest, SamplingParams

    ids = [1 + i % max(1, vocab_size - 1) for i in range(prompt_tokens)]
    engine.add_request(EngineRequest("fleet-warm-up", ids, SamplingParams(max_tokens=max_tokens)))
    while engine.has_unfinished():
        engine.step()


def build_process_engine(
    model: ModelSettings, cache_dir: Path, *, log_format: str, log_level: str, cancel: threading.Event | None = None
) -> BuiltEngine:
    """The continuous engine in its own process; the worker keeps only the tokenizer. Setting `cancel` while
    the process loads kills it and raises StartCancelled."""
    from worker.engine.process import ProcessEngine
    from worker.loader import load_tokenizer, resolve_path

    engine = ProcessEngine(model, cache_dir, log_format=log_format, log_level=log_level, cancel=cancel)
    try:
        tokenizer = load_tokenizer(resolve_path(model.path, cache_dir))
    except Exception:
        engine.close()
        raise
    return engine, tokenizer, engine.max_model_len


def build_simulated_engine(model: ModelSettings, cache_dir: Path, exit_marker: str | None = None) -> BuiltEngine:
    from worker.engine.simulated import ByteTokenizer, SimulatedEngine

    fail_on = model.simulated_fail_marker.encode() if model.simulated_fail_marker else None
    engine = SimulatedEngine(
        tokens_per_s=model.simulated_tokens_per_s,
        max_running=model.max_running,
        fail_on=fail_on,
        exit_on=exit_marker.encode() if exit_marker else None,
    )
    return engine, ByteTokenizer(), model.max_model_len


ENGINES: dict[EngineKind, Callable[[ModelSettings, Path], BuiltEngine]] = {
    EngineKind.CONTINUOUS: build_continuous_engine,
    EngineKind.SIMULATED: build_simulated_engine,
}


def build_engine(model: ModelSettings, cache_dir: Path) -> BuiltEngine:
    """(engine, tokenizer, max_model_len) for the model's engine kind, stepping in this process."""
    return ENGINES[model.engine](model, cache_dir)


def build_worker_engine(settings: Settings, model: ModelSettings, cancel: threading.Event | None = None) -> BuiltEngine:
    """The worker's engine: the model in its own process when `engine_process` is set (the default), whose
    start `cancel` can cut short (an engine loading in this process cannot be interrupted)."""
    if model.engine is EngineKind.CONTINUOUS and model.engine_process:
        return build_process_engine(
            model, settings.cache_path, log_format=settings.log_format, log_level=settings.log_level, cancel=cancel
        )
    if model.engine is EngineKind.SIMULATED and settings.worker.simulated_exit_marker:
        return build_simulated_engine(model, settings.cache_path, settings.worker.simulated_exit_marker)
    return build_engine(model, settings.cache_path)
