"""Running a long-lived service under asyncio with clean signal handling."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


def run_service(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` until it returns; SIGTERM and SIGINT set `stop` (drain, then exit 0)."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())
