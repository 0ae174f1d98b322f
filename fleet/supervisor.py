"""One supervisor for a fleet's child processes (`python -m fleet.cli router|worker ...`): `fleet up`, the
benchmarks and the test fixtures all start, signal, watch and stop routers and workers through it.

Children die with their parent (see `fleet.runtime.spawn_cli`), log to `<logs>/<name>.log`, and read the
same configuration file as the parent. `stop_all` is a drain: SIGTERM to every child, then SIGKILL for
any still running when the grace is spent.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from fleet.runtime import spawn_cli
from fleet.settings import Settings, load_settings

log = structlog.get_logger(__name__)

CLEAN_EXITS = (0, -signal.SIGKILL, -signal.SIGTERM)  # how a child may end without having failed


def toml_value(v: object) -> str:
    """A Python scalar as a TOML value (for configuration files that tests and benchmarks write)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


@dataclass
class FleetProcesses:
    """The router and worker processes of one fleet, by name."""

    bootstrap: str
    logs: Path
    config: Path | str | None = None  # the TOML file the children read (None: FLEET_CONFIG if set, else defaults)
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment for every child
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    health_files: dict[str, Path] = field(default_factory=dict)  # router name -> the health file it rewrites

    @property
    def settings(self) -> Settings:
        """The settings the children run with."""
        env = {"FLEET_KAFKA_BOOTSTRAP": self.bootstrap}
        if self.config is None and os.environ.get("FLEET_CONFIG"):
            env["FLEET_CONFIG"] = os.environ["FLEET_CONFIG"]
        return load_settings(self.config, env=env)

    def start(
        self, name: str, *args: str, module: str = "fleet.cli", env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """`python -m fleet.cli ARGS` (or another `module`, e.g. a benchmark's stand-in) as the child `name`;
        `env`: this child's own additions (e.g. its FLEET_METRICS_PORT)."""
        child_env = dict(os.environ, FLEET_KAFKA_BOOTSTRAP=self.bootstrap, FLEET_LOG_FORMAT="json")
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env.update(self.env)
        child_env.update(env or {})
        env = child_env
        if self.config is not None:
            env["FLEET_CONFIG"] = str(self.config)
        self.logs.mkdir(parents=True, exist_ok=True)
        p = spawn_cli(list(args), env=env, log_file=self.logs / f"{name}.log", module=module)
        self.procs[name] = p
        return p

    def start_router(self, name: str = "router", env: Mapping[str, str] | None = None) -> str:
        """A router; it rewrites a health file (the configured one, else `<logs>/<name>.health`), from which
        `routers_see_workers` reads what it sees of the fleet."""
        configured = self.settings.health_file
        path = Path(configured) if configured else self.logs / f"{name}.health"
        self.health_files[name] = path
        extra = {} if configured else {"FLEET_HEALTH_FILE": str(path)}
        self.start(name, "router", env={**extra, **(env or {})})
        return name

    def start_worker(self, model: str, name: str | None = None, env: Mapping[str, str] | None = None) -> str:
        """A worker of `model`, named `worker-<model>` (then `worker-<model>-1`, ...) unless `name` is given."""
        if name is None:
            name = f"worker-{model}"
            n = 0
            while name in self.procs:
                n += 1
                name = f"worker-{model}-{n}"
        self.start(name, "worker", "--model", model, env=env)
        return name

    def running(self, prefix: str = "") -> list[str]:
        """Names of the children still running (those starting with `prefix`)."""
        return [n for n, p in self.procs.items() if n.startswith(prefix) and p.poll() is None]

    def workers(self) -> list[str]:
        return self.running("worker-")

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def stop(self, name: str, *, kill: bool = False) -> None:
        """SIGTERM (drain) or SIGKILL to one child; does not wait."""
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGKILL if kill else signal.SIGTERM)

    def wait(self, name: str, timeout_s: float = 60) -> int:
        return self.procs[name].wait(timeout_s)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def assignments(self, name: str) -> list[tuple[str, list[object]]]:
        """(event, partitions) of each `router.assigned`, `worker.assigned` and `worker.revoked` the child `name`
        logged (JSON logs), in order."""
        events = ("router.assigned", "worker.assigned", "worker.revoked")
        out: list[tuple[str, list[object]]] = []
        for line in self.log(name).splitlines():
            if '"router.assigned"' not in line and '"worker.assigned"' not in line and '"worker.revoked"' not in line:
                continue
            try:  # a progress bar may have run into the line without a newline
                rec = json.loads(line[line.index("{") :])
            except ValueError:
                continue
            if rec.get("event") in events:
                out.append((rec["event"], list(rec.get("partitions") or [])))
        return out

    def held(self, name: str) -> list[object]:
        """What the child `name` holds, as its log says: its latest assignment (none while revoked)."""
        events = self.assignments(name)
        return events[-1][1] if events and events[-1][0] != "worker.revoked" else []

    def groups_settled(self) -> bool:
        """Whether the consumer groups of the running children have settled, as their logs say: the routers'
        latest assignments hold every intake partition once, and each model's workers' latest assignments hold
        each partition of its topics once (none of them revoked and not yet given its share). A request sent
        then is served without waiting for a join (the dev broker holds a group's JoinGroup for about half the
        session timeout, and a worker reports status before it has joined)."""
        settings = self.settings
        topics, kafka = settings.kafka.topics, settings.kafka
        intake = {f"{topics.requests}:{p}" for p in range(kafka.intake_partitions)}
        intake |= {f"{topics.tenant_intake(t.name)}:0" for t in settings.tenants}
        routers: Counter[object] = Counter()
        workers: dict[str, Counter[object]] = {}
        for name, p in self.procs.items():
            if p.poll() is not None:
                continue
            if (model := _worker_model(p)) is not None:
                events = self.assignments(name)
                if not events or events[-1][0] != "worker.assigned":
                    return False  # not joined yet, or revoked and not yet given its new share
                workers.setdefault(model, Counter()).update(events[-1][1])
            elif "router" in [str(a) for a in p.args]:  # type: ignore[union-attr]
                events = self.assignments(name)
                if not events:
                    return False
                routers.update(events[-1][1])
        if routers and (set(routers) != intake or max(routers.values()) > 1):
            return False
        for held in workers.values():  # each partition once per lane (the model's topic and its batch topic)
            counts = set(held.values())
            if set(held) != set(range(kafka.model_partitions)) or len(counts) != 1 or counts.pop() > 2:
                return False
        return True

    def routers_see_workers(self) -> bool:
        """Whether every running router has heard a live worker of each model that has a running worker, as its
        health file says (`live`: model -> live workers): a request sent then is not refused for want of one it
        has not read yet."""
        models = {m for p in self.procs.values() if p.poll() is None and (m := _worker_model(p)) is not None}
        for name, path in self.health_files.items():
            if self.procs[name].poll() is not None:
                continue
            try:
                live = json.loads(path.read_text()).get("live") or {}
            except (OSError, ValueError, AttributeError):
                return False  # not written yet (or a router not yet started)
            if not isinstance(live, dict) or any(not isinstance(live.get(m), int) or live[m] < 1 for m in models):
                return False
        return True

    async def wait_settled(self, timeout_s: float) -> bool:
        """Until `groups_settled` and `routers_see_workers` (True), a child exits or `timeout_s` passes (False)."""
        deadline = time.monotonic() + timeout_s
        while not (self.groups_settled() and self.routers_see_workers()):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs.values()):
                return False
            await asyncio.sleep(0.1)
        return True

    def check_alive(self) -> None:
        """Raise if a child has failed (exited other than by a clean stop), with the tail of its log."""
        for name, p in self.procs.items():
            if p.poll() is not None and p.returncode not in CLEAN_EXITS:
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.log(name)[-2000:]}")

    async def died(self) -> str:
        """The name of the first child that exits (for a caller that must stop when any does)."""
        while True:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    return name
            await asyncio.sleep(0.2)

    def stop_all(self, grace_s: float = 40.0) -> None:
        """Drain every child: SIGTERM, wait up to `grace_s` in all, SIGKILL the rest."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for name, p in self.procs.items():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("supervisor.kill", process=name, grace_s=grace_s)
                p.kill()
                p.wait()


def _worker_model(p: subprocess.Popen[bytes]) -> str | None:
    """The model a child runs, if it is a worker (`... worker --model M`)."""
    args = [str(a) for a in p.args]  # type: ignore[union-attr]
    if "worker" in args and "--model" in args and args.index("--model") + 1 < len(args):
        return args[args.index("--model") + 1]
    return None
