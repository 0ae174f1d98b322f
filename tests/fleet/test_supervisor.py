"""The supervisor's readiness from a router's health file (fleet/supervisor.py `routers_see_workers`): the file is
the router's to write, but anything may be in it (half written, hand edited, an older router's format), and only a
live count of at least one per running worker's model says ready."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.supervisor import FleetProcesses


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[FleetProcesses]:
    f = FleetProcesses("127.0.0.1:1", tmp_path)
    # stand-ins with the command lines the supervisor reads: sh ignores the words after its script
    f.procs["worker-m"] = subprocess.Popen(["sh", "-c", "sleep 60", "worker", "--model", "m"])
    f.procs["router"] = subprocess.Popen(["sh", "-c", "sleep 60", "router"])
    f.health_files["router"] = tmp_path / "router.health"
    yield f
    for p in f.procs.values():
        p.kill()
        p.wait()


@pytest.mark.parametrize(
    "content",
    [None, "", "{not json", "[1, 2]", '{"live": [1]}', '{"live": {}}', '{"live": {"m": "1"}}', '{"live": {"m": 0}}',
     '{"live": {"other": 3}}', '{"ts": 1, "ready": true, "health": {"m": "closed 1w 0/0"}}'],
)  # fmt: skip
def test_a_health_file_without_a_live_worker_of_each_model_is_not_ready(
    fleet: FleetProcesses, content: str | None
) -> None:
    if content is not None:
        fleet.health_files["router"].write_text(content)
    assert fleet.routers_see_workers() is False


def test_a_live_worker_of_each_running_model_is_ready_and_a_stopped_router_is_not_asked(fleet: FleetProcesses) -> None:
    path = fleet.health_files["router"]
    path.write_text('{"live": {"m": 1, "unused": 0}}')
    assert fleet.routers_see_workers() is True
    path.write_text("garbage")
    fleet.procs["router"].kill()
    fleet.procs["router"].wait()
    assert fleet.routers_see_workers() is True  # only running routers are asked
