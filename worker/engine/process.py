"""The engine in its own process, behind the same `Engine` interface.

The worker's event loop owns Kafka; with the engine stepping in a thread of the
same process, the two share one GIL: under load the loop (mostly aiokafka's
fetcher) holds it about an eighth of the time, and every model step waits for
it between torch ops, while the loop waits for the step's Python. vLLM v1 runs
its engine core in a separate process for the same reason. Here the child
process owns the model and steps on its own whenever it has work; the worker
sends it typed commands (AddCmd, AbortCmd, CloseCmd) over one pipe and reads typed
events (Ready, Outputs, StepFailed) from another. Commands go out through a sender thread:
`add_request` and `abort_request` never block the event loop, even when the engine process stops
reading and its pipe fills.

    worker process                         engine process
    add_request / abort_request  --cmd-->  inbox -> engine.step() loop
    step(): next output batch    <--out--  (outputs, stats) after every step

`step()` returns whatever batches arrived (or an empty list after a short
wait); `has_unfinished()` is kept on the worker's side from the ids added and
the finished outputs seen. Stats ride along at most every 0.25 s (and whenever
the engine runs dry), which is fresher than the worker's one-second status beat
needs. If the engine process dies, `step()`, `stats()` and `add_request()`
raise `EngineDied`: the worker then exits without committing the work it held,
and Kafka hands that work to a healthy worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing as mp
import queue
import signal
import struct
import termios
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import msgspec
import structlog

from contracts.errors import FleetError
from fleet.settings import ModelSettings
from worker.engine.api import EngineDied, EngineRequest, EngineStats, FinishKind, StepOutput, check_prompt_len

log = structlog.get_logger(__name__)

_POLL_S = 0.05  # how long step() waits for output before returning an empty batch
_START_TIMEOUT_S = 900.0  # loading a large checkpoint can take minutes
_START_POLL_S = 0.1  # how often a loading engine process is checked for a cancelled start
_STATS_EVERY_S = 0.25  # stats sent with outputs at most this often, and whenever the engine runs dry


class StartCancelled(RuntimeError):
    """The worker was told to stop while its engine process was still loading; the process was killed."""


class EngineFailed(FleetError, RuntimeError):
    """A step raised inside the engine process, or the process could not load its model; the message carries the
    child's exception (the CLI prints it as one line and exits 3)."""


# -- the messages on the two pipes (pickled: the payloads are the engine API's own dataclasses) -------


class AddCmd(msgspec.Struct, frozen=True, tag="add"):
    request: EngineRequest


class AbortCmd(msgspec.Struct, frozen=True, tag="abort"):
    request_id: str
    reason: FinishKind


class CloseCmd(msgspec.Struct, frozen=True, tag="close"):
    pass


Command = AddCmd | AbortCmd | CloseCmd


class Ready(msgspec.Struct, frozen=True, tag="ready"):
    max_model_len: int
    stats: EngineStats


class StartFailed(msgspec.Struct, frozen=True, tag="start_failed"):
    error: str


class Outputs(msgspec.Struct, frozen=True, tag="outputs"):
    """One step's outputs (possibly none: a prefill chunk); every step sends one, which is the progress
    the worker's watchdog reads. Stats ride along at most every _STATS_EVERY_S."""

    outputs: list[StepOutput]
    stats: EngineStats | None = None


class StepFailed(msgspec.Struct, frozen=True, tag="step_failed"):
    error: str
    stats: EngineStats


Event = Ready | StartFailed | Outputs | StepFailed


def _serve(
    model: ModelSettings, cache_dir: Path, cmd: Connection, out: Connection, log_format: str, log_level: str
) -> None:
    """The engine process: build the engine, then step whenever there is work, reading commands between steps."""
    from fleet.logging import configure_logging
    from fleet.runtime import die_with_parent
    from worker.engine import build_engine

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the worker drains us
    configure_logging(log_format, log_level)
    try:
        engine, _tokenizer, max_model_len = build_engine(model, cache_dir)
    except Exception as exc:  # reported to the worker, which exits with it
        out.send(StartFailed(f"{type(exc).__name__}: {exc}"))
        return
    out.send(Ready(max_model_len, engine.stats()))
    stats_at = time.monotonic()
    while True:
        idle = not engine.has_unfinished()
        while cmd.poll(None if idle else 0):
            try:
                msg: Command = cmd.recv()
            except EOFError:  # the worker is gone
                return
            if isinstance(msg, AddCmd):
                engine.add_request(msg.request)
            elif isinstance(msg, AbortCmd):
                engine.abort_request(msg.request_id, msg.reason)
            else:
                engine.close()
                return
            idle = False
        if not engine.has_unfinished():
            continue
        try:
            outputs = engine.step()
        except Exception as exc:  # the worker restarts or poisons the requests, as with an in-process engine
            log.exception("engine_process.step_failed")
            out.send(StepFailed(f"{type(exc).__name__}: {exc}", engine.stats()))
            continue
        now = time.monotonic()
        stats = None
        if now - stats_at >= _STATS_EVERY_S or not engine.has_unfinished():
            stats, stats_at = engine.stats(), now
        out.send(Outputs(outputs, stats))


class ProcessEngine:
    """An `Engine` whose model runs in a child process (see the module docstring)."""

    simulated = False

    def __init__(
        self,
        model: ModelSettings,
        cache_dir: Path,
        *,
        log_format: str = "json",
        log_level: str = "info",
        cancel: threading.Event | None = None,
    ) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited threads or torch state
        cmd_r, self._cmd = ctx.Pipe(duplex=False)
        self._out, out_w = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_serve,
            args=(model, cache_dir, cmd_r, out_w, log_format, log_level),
            name=f"engine-{model.name}",
            daemon=True,
        )
        self._proc.start()
        cmd_r.close()
        out_w.close()
        self._unfinished: set[str] = set()
        self._closed = False
        self._dead = False
        # a send blocks once the pipe's buffer (64 KiB) is full, which a stopped or hung engine process never
        # empties, and the event loop must not block on it (its watchdog is what ends such a process): a
        # command that does not fit in the free space goes out through a thread instead
        self._outgoing: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._order = threading.Lock()  # inline writes wait while the thread still holds earlier commands
        self._queued = 0  # commands handed to the thread and not yet written
        self._send_failed = False
        self._sender = threading.Thread(target=self._send_commands, name=f"engine-{model.name}-cmd", daemon=True)
        self._failure: str | None = None
        self.steps_seen = 0  # steps the process reported: the worker's watchdog reads progress from it
        started = time.monotonic()
        while not self._out.poll(_START_POLL_S):  # the load takes seconds to minutes; a stop must not wait for it
            if cancel is not None and cancel.is_set():
                self._kill()
                raise StartCancelled(f"stopped while the engine process for {model.name!r} was loading")
            if time.monotonic() - started > _START_TIMEOUT_S:
                self._kill()
                raise EngineDied(f"engine process for {model.name!r} did not start in {_START_TIMEOUT_S:.0f} s")
        msg = self._recv()
        if not isinstance(msg, Ready):
            self._kill()
            error = msg.error if isinstance(msg, StartFailed | StepFailed) else repr(msg)
            raise EngineFailed(f"engine process for {model.name!r} failed to start: {error}")
        self.max_model_len: int = msg.max_model_len
        self._stats: EngineStats = msg.stats
        self._sender.start()
        log.info("engine_process.started", pid=self._proc.pid, model=model.name)

    # -- called from the event-loop thread ------------------------------------------------------------

    def add_request(self, request: EngineRequest) -> None:
        check_prompt_len(len(request.prompt_token_ids), self.max_model_len)
        self._unfinished.add(request.request_id)
        self._send(AddCmd(request))

    def abort_request(self, request_id: str, reason: FinishKind) -> None:
        if request_id in self._unfinished and not self._dead:
            self._send(AbortCmd(request_id, reason))

    def has_unfinished(self) -> bool:
        return bool(self._unfinished)

    def stats(self) -> EngineStats:
        """The latest stats the process sent; raises `EngineDied` once it is gone (the worker's status
        beat calls this every second, so a death is noticed even when idle)."""
        if not self._closed and (self._dead or not self._proc.is_alive()):
            raise self._gone()
        return self._stats

    def kill(self) -> None:
        """SIGKILL the process at once (the worker's watchdog found it hung: `close` would wait for it)."""
        self._closed = True
        self._kill()
        self._stop_sender()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(EngineDied):  # already gone: nothing to close
            self._send(CloseCmd())
        self._proc.join(timeout=10)
        self._kill()
        self._stop_sender()

    # -- called from the worker thread that steps ----------------------------------------------------

    def step(self) -> list[StepOutput]:
        """The outputs of every step the engine process finished since the last call (waits up to 50 ms)."""
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise EngineFailed(failure)
        outputs: list[StepOutput] = []
        if not self._out.poll(_POLL_S):
            if not self._proc.is_alive():
                raise self._gone()
            return outputs
        while True:
            msg = self._recv()
            self.steps_seen += 1
            if isinstance(msg, StepFailed):
                self._stats = msg.stats
                if not outputs:
                    raise EngineFailed(msg.error)
                self._failure = msg.error  # hand over what the earlier steps produced first
                return outputs
            if not isinstance(msg, Outputs):
                raise EngineFailed(f"unexpected message from the engine process: {type(msg).__name__}")
            self._stats = msg.stats or self._stats
            batch = msg.outputs
            for o in batch:
                if o.finished is not None:
                    self._unfinished.discard(o.request_id)
            outputs.extend(batch)
            if not self._out.poll(0):
                return outputs

    # -- plumbing -------------------------------------------------------------------------------------

    def _send(self, msg: Command) -> None:
        """Write a command to the pipe now when it fits in the pipe's free space (the common case: no thread
        hop on the way to the engine), else queue it for the sender thread; never blocks, keeps the order."""
        if self._dead or self._send_failed:
            raise self._gone()
        data = ForkingPickler.dumps(msg)
        with self._order:
            if self._queued == 0 and len(data) + _FRAME_BYTES <= _pipe_room(self._cmd):
                try:
                    self._cmd.send_bytes(data)
                except OSError:  # the process is gone
                    self._send_failed = True
                    raise self._gone() from None
                return
            self._queued += 1
        self._outgoing.put(bytes(data))

    def _send_commands(self) -> None:
        """The sender thread: queued commands in order onto the pipe until None (or the pipe breaks); it may
        block on a full pipe, which only it ever does."""
        while (data := self._outgoing.get()) is not None:
            try:
                self._cmd.send_bytes(data)
            except OSError:  # the process is gone: the next add raises EngineDied, step() notices too
                self._send_failed = True
                return
            finally:
                with self._order:
                    self._queued -= 1

    def _stop_sender(self) -> None:
        """After the process ended: a send blocked on its full pipe fails, and the thread ends."""
        if self._sender.is_alive():
            self._outgoing.put(None)
            self._sender.join(timeout=5)

    def _recv(self) -> Event:
        try:
            msg: Event = self._out.recv()
        except (EOFError, OSError) as exc:
            raise self._gone() from exc
        return msg

    def _gone(self) -> EngineDied:
        """Mark the process dead (later adds and aborts fail fast or do nothing) and say how it ended."""
        self._dead = True
        self._proc.join(timeout=1)
        return EngineDied(f"engine process exited with code {self._proc.exitcode}")

    def _kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5)


_FRAME_BYTES = 16  # Connection.send_bytes adds a 4-byte length (12 bytes for messages over 2 GiB)
_F_GETPIPE_SZ = 1032  # Linux fcntl: the pipe's capacity
_PAGE = 4096


def _pipe_room(conn: Connection) -> int:
    """Bytes a write to this pipe end surely takes without blocking: only an empty pipe is counted (its
    capacity less a page), because the kernel stores a pipe in pages and partly filled pages make the
    free byte count overstate what fits; 0 where the pipe holds data or cannot be asked."""
    try:
        fd = conn.fileno()
        queued = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        capacity = int(fcntl.fcntl(fd, _F_GETPIPE_SZ))
    except OSError:
        return 0
    return capacity - _PAGE if queued == 0 else 0
