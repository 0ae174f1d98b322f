"""Running a long-lived service under asyncio with clean signal handling."""

from __future__ import annotations

import asyncio
import ctypes
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path


def die_with_parent() -> None:
    """preexec_fn for child processes: on Linux, the child gets SIGTERM when its parent dies,
    so a killed `fleet up` or test run leaves no orphan broker or worker behind."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn_cli(
    args: list[str], *, env: Mapping[str, str], log_file: Path, module: str = "fleet.cli"
) -> subprocess.Popen[bytes]:
    """`python -m fleet.cli ARGS` (or another `module`) as a child that dies with this process, output
    appended to `log_file` (how `fleet up`, the benchmarks and the tests start routers and workers)."""
    with open(log_file, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )


def run_service(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` until it returns; SIGTERM and SIGINT set `stop` (drain, then exit 0)."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


def run_interruptible(main: Callable[[], int], name: str) -> int:
    """Run a one-shot command (a model conversion, the demo build) so that Ctrl-C and SIGTERM end it at
    once: both unwind the stack (its `finally` blocks remove half-written files) and it exits 130 or 143
    with one line instead of a traceback."""

    def on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{name}: interrupted; nothing half-written is left", file=sys.stderr)
        return 130


def log_task_failure(task: asyncio.Task[object]) -> None:
    """Done-callback for background tasks: a task that dies must say so, never fail silently."""
    import structlog

    if not task.cancelled() and task.exception() is not None:
        structlog.get_logger(__name__).error("task.failed", task=task.get_name(), exc_info=task.exception())
