"""Preparing models before anything loads them, in child processes that a stop ends at once.

Converting a GGUF (`fleet.gguf_models`) or training the demo pair (`fleet.demo_models`) runs as
`python -m MODULE ...`: the child holds the cache entry's lock and writes into its own staging directory.
The parent awaits it against its stop event; on stop it sends SIGTERM (the child removes its staging
directory and exits), SIGKILL after a short grace, and then removes whatever a killed child left. Ctrl-C in
a terminal reaches the child directly as well (same process group), with the same result.

Workers prepare only what converts in seconds (GGUF); they never train. `fleet up` prepares everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import structlog

from fleet import gguf_models
from fleet.cache_dirs import remove_staging_of
from fleet.model_paths import DEMO_PREFIX, demo_dir_name, demo_metadata
from fleet.runtime import die_with_parent
from fleet.settings import EngineKind, ModelSettings

log = structlog.get_logger(__name__)

STOP_GRACE_S = 3.0  # a child that has not exited this long after SIGTERM is killed


def model_specs(models: Iterable[ModelSettings]) -> list[str]:
    """Every checkpoint spec the models name (targets and drafts), each once, in order."""
    specs: list[str] = []
    for m in models:
        for spec in (m.path, m.draft_path):
            if spec is not None and spec not in specs:
                specs.append(spec)
    return specs


def gguf_to_convert(specs: Iterable[str], cache_dir: Path) -> list[str]:
    """The `gguf:` specs without a complete converted entry (a missing package raises FileNotFoundError)."""
    return [
        s
        for s in specs
        if gguf_models.is_gguf_spec(s) and not gguf_models.is_complete(gguf_models.converted_path(s, cache_dir))
    ]


def demo_to_build(specs: Iterable[str], cache_dir: Path) -> bool:
    root = cache_dir.expanduser() / demo_dir_name(0)
    return any(s.startswith(DEMO_PREFIX) for s in specs) and demo_metadata(root) is None


def conversion_command(specs: list[str], cache_dir: Path) -> list[str]:
    return [sys.executable, "-m", "fleet.gguf_models", "--cache-dir", str(cache_dir), *specs]


def demo_build_command(cache_dir: Path) -> list[str]:
    return [sys.executable, "-m", "fleet.demo_models", "--cache-dir", str(cache_dir)]


async def run_child(
    argv: list[str], stop: asyncio.Event, *, cache_dir: Path, output: IO[bytes] | None = None
) -> int | None:
    """Run a preparation child to its end (its exit status) or until `stop` is set (None; it is then
    stopped and its staging directories removed). Cancelling the caller stops the child the same way."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=output, stderr=output, preexec_fn=die_with_parent)
    waiter = asyncio.ensure_future(proc.wait())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        await asyncio.shield(_stop_child(proc, waiter, cache_dir))
        raise
    finally:
        stopper.cancel()
    if waiter.done():
        return waiter.result()
    await _stop_child(proc, waiter, cache_dir)
    return None


async def _stop_child(proc: asyncio.subprocess.Process, waiter: asyncio.Future[int], cache_dir: Path) -> None:
    """SIGTERM (the child removes its staging directory and exits), SIGKILL after the grace, then remove
    what a killed child left."""
    log.info("preparation.stopping", pid=proc.pid)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(waiter), STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await waiter
    removed = remove_staging_of(cache_dir, proc.pid)
    log.info("preparation.stopped", pid=proc.pid, returncode=proc.returncode, removed=[str(p) for p in removed])


class PreparationFailed(RuntimeError):
    pass


def _made(cache_dir: Path) -> Path:
    cache_dir = cache_dir.expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir


def _conversions(models: Iterable[ModelSettings], cache_dir: Path) -> tuple[Path, list[str]]:
    cache_dir = cache_dir.expanduser()
    todo = gguf_to_convert(model_specs(models), cache_dir)
    return (_made(cache_dir) if todo else cache_dir), todo


def _finished(rc: int | None, what: str) -> bool:
    """A preparation child's exit: True when it succeeded, False when a stop ended it; raises when it failed."""
    if rc is None:
        return False
    if rc != 0:
        raise PreparationFailed(f"{what} failed (exit {rc})")
    return True


async def prepare_gguf(
    models: Iterable[ModelSettings], cache_dir: Path, stop: asyncio.Event, *, output: IO[bytes] | None = None
) -> bool:
    """Convert the models' GGUF checkpoints that are not converted yet. False when `stop` ended it first;
    raises PreparationFailed when the conversion failed."""
    cache_dir, todo = _conversions(models, cache_dir)
    if not todo:
        return True
    log.info("preparation.converting", specs=todo, cache_dir=str(cache_dir))
    rc = await run_child(conversion_command(todo, cache_dir), stop, cache_dir=cache_dir, output=output)
    return _finished(rc, f"converting {todo}")


async def prepare_demo(cache_dir: Path, stop: asyncio.Event, *, output: IO[bytes] | None = None) -> bool:
    """Train the demo pair if it is not built. False when `stop` ended it first."""
    cache_dir = _made(cache_dir)
    rc = await run_child(demo_build_command(cache_dir), stop, cache_dir=cache_dir, output=output)
    return _finished(rc, "building the demo models")


async def prepare_models(
    models: Iterable[ModelSettings],
    cache_dir: Path,
    stop: asyncio.Event,
    *,
    say: Callable[[str], None] = lambda _: None,
) -> bool:
    """Everything the models need before any process loads them (`fleet up`, `fleet models prepare`, the
    benchmarks' own fleets): GGUF conversions, then the demo pair's build, each only if missing. False when
    `stop` ended it; raises PreparationFailed (or FileNotFoundError for a GGUF package not installed)."""
    real = [m for m in models if m.engine is EngineKind.CONTINUOUS]
    specs = model_specs(real)
    todo = gguf_to_convert(specs, cache_dir)
    if todo:
        say(f"converting {', '.join(todo)} to Hugging Face format (once; ~30 s on 2 cores)")
        if not await prepare_gguf(real, cache_dir, stop):
            return False
    if demo_to_build(specs, cache_dir):
        say("building the demo models (once: about 5 minutes on 2 cores)")
        if not await prepare_demo(cache_dir, stop):
            return False
    return True
