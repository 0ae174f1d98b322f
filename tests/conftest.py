"""Shared fixtures. Kafka fixtures (a real Tansu broker process) live in
tests/fixtures_kafka.py; checkpoint fixtures (real HF-format models written
with save_pretrained) in tests/fixtures_models.py.

Every test belongs to one tier (markers registered in pyproject.toml), so each is easy to select:

- `unit`: pure: no broker, no process, no model (contracts, stages, policies, scheduler, sampling, output);
- `integration`: services or models in this process against one real broker, or real checkpoints loaded;
- `system`: real router and worker processes (or other child processes: `fleet up`, converters, clients).

A test marked with one keeps it; the rest are sorted here by what they use (their fixtures and what their
module brings in), so a new test lands in the right tier without anyone remembering to mark it.

`make test` runs the suite on several processes (pytest-xdist, `--dist loadgroup`; each process has its own
session fixtures, so its own broker). Here the tests that share something costly to build are kept on one
process (`xdist_group`): the users of each shared fleet or converted model, and the tests of a module with a
module-scoped fixture. Under xdist the heaviest work is handed out first, and a shared fleet is stopped once its
last test has run instead of idling (polling the broker) until the session ends.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures_kafka", "tests.fixtures_models", "tests.fixtures_smollm2"]

TIERS = ("unit", "integration", "system")
# fixtures that start real processes of the fleet (or need them)
SYSTEM_FIXTURES = {"simulated_fleet", "model_fleet", "smollm2", "quant_fleet"}
# names a module imports when its tests start processes themselves
SYSTEM_NAMES = {
    "FleetProcs",
    "FleetProcesses",
    "started",
    "Procs",
    "subprocess",
    "interrupt_fleet_up",
    "ProcessEngine",  # the engine in a child process
    "mp",
    "multiprocessing",
}
# fixtures and names that mean a real broker or a real model in this process
INTEGRATION_FIXTURES = {"broker", "tiny_checkpoint", "tiny_pair", "demo_models"}
INTEGRATION_NAMES = {
    "EmbeddedBroker",
    "AIOKafkaConsumer",
    "AIOKafkaProducer",
    "FleetClient",
    "from_pretrained",
    "AutoModelForCausalLM",
    "LlamaForCausalLM",
    "load_model",
    "build_tiny_pair",
    "load_bundle",
    "ContinuousEngine",
    "build_engine",
    "Pair",  # tests/worker/engine/helpers.py: the tiny target/draft checkpoints
    "own_tiny_target",
}


def tier_of(item: pytest.Item) -> str:
    own = [m.name for m in item.iter_markers() if m.name in TIERS]
    if own:
        return own[0]
    fixtures = set(getattr(item, "fixturenames", ()))
    names = set(vars(item.module)) if getattr(item, "module", None) is not None else set()  # type: ignore[attr-defined]
    if fixtures & SYSTEM_FIXTURES or names & SYSTEM_NAMES:
        return "system"
    if fixtures & INTEGRATION_FIXTURES or names & INTEGRATION_NAMES:
        return "integration"
    return "unit"


# session fixtures costly to build: all their users share one xdist process (the first named wins)
SHARED_FIXTURES = ("smollm2", "demo_models", "model_fleet", "simulated_fleet")
# session fixtures that run processes: stopped after their last user instead of at the session's end
RELEASED_EARLY = ("model_fleet", "simulated_fleet")
# what a test costs to schedule, roughly (seconds on 2 cores), only to hand out the longest work first
COST = {"unit": 0.1, "integration": 2.0, "system": 10.0}
SLOW_COST = 30.0
GROUP_SETUP_COST = {"smollm2": 120.0, "demo_models": 60.0, "model_fleet": 30.0, "simulated_fleet": 20.0}
MODULE_SETUP_COST = 20.0


def xdist_group_of(item: pytest.Item) -> str | None:
    """The group a test must share a process with: its own `xdist_group` mark, else the shared session fixture
    it uses, else its module when it uses a module-scoped fixture (a fleet started once for the module's
    tests), else none."""
    mark = item.get_closest_marker("xdist_group")
    if mark is not None:
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    fixtures = set(getattr(item, "fixturenames", ()))
    for name in SHARED_FIXTURES:
        if name in fixtures:
            return name
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    if any(fds and fds[-1].scope in ("module", "class", "package") for fds in defs):
        return item.nodeid.split("::", 1)[0]
    return None


def heaviest_first(items: list[pytest.Item], groups: dict[str, str | None]) -> list[pytest.Item]:
    """`items` with each group's tests together, the groups and lone tests ordered by estimated cost, longest
    first (collection order within a group and among equals)."""
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(groups[item.nodeid] or item.nodeid, []).append(item)

    def cost(key: str, members: list[pytest.Item]) -> float:
        total = sum(COST[tier_of(i)] + (SLOW_COST if i.get_closest_marker("slow") else 0.0) for i in members)
        if groups[members[0].nodeid] is not None:
            total += GROUP_SETUP_COST.get(key, MODULE_SETUP_COST)
        return total

    ordered = sorted(units.items(), key=lambda kv: -cost(*kv))
    return [item for _, members in ordered for item in members]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        if not any(m.name == tier for m in item.iter_markers()):
            item.add_marker(getattr(pytest.mark, tier))
    groups_file = os.environ.get(GROUPS_ENV)
    if os.environ.get("PYTEST_XDIST_WORKER") and groups_file:  # a process of `--dist loadgroup`
        groups = {item.nodeid: xdist_group_of(item) for item in items}
        items[:] = heaviest_first(items, groups)
        tmp = Path(f"{groups_file}.{os.environ['PYTEST_XDIST_WORKER']}")
        tmp.write_text(json.dumps({nodeid: group for nodeid, group in groups.items() if group is not None}))
        tmp.replace(groups_file)  # every process collects the same tests and writes the same map


GROUPS_ENV = "FLEET_TEST_XDIST_GROUPS"  # where the processes leave the test -> group map for the scheduler


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("dist", "no") == "loadgroup" and not os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ[GROUPS_ENV] = str(Path(tempfile.mkdtemp(prefix="fleet-xdist-")) / "groups.json")


def pytest_unconfigure(config: pytest.Config) -> None:
    if GROUPS_ENV in os.environ and not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(Path(os.environ.pop(GROUPS_ENV)).parent, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`--dist loadgroup` by this file's groups (`xdist_group_of`; xdist's own marks do not reach its scheduler
    under pytest 9, which no longer reads the node id xdist rewrites), in the order the processes collected
    (`heaviest_first`), not by group size."""
    if config.getoption("dist", "no") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                self.groups = json.loads(Path(os.environ[GROUPS_ENV]).read_text())
            return self.groups.get(nodeid, nodeid)

    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


_finished: Counter[str] = Counter()  # per early-released fixture: how many of its users have run here


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """After a test, stop a shared fleet (RELEASED_EARLY) whose every user in the session has run in this
    process: its router and workers would otherwise poll the broker until the session ends. A later test
    that asks for it again gets a new one."""
    result = yield
    uses = set(getattr(item, "fixturenames", ()))
    for name in RELEASED_EARLY:
        if name not in uses:
            continue
        _finished[name] += 1
        users = sum(1 for i in item.session.items if name in getattr(i, "fixturenames", ()))
        if _finished[name] < users:
            continue
        fixturedefs = item._fixtureinfo.name2fixturedefs.get(name)  # type: ignore[attr-defined]
        if fixturedefs and fixturedefs[-1].cached_result is not None:
            fixturedefs[-1].finish(item._request)  # type: ignore[attr-defined]
    return result
