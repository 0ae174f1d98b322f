"""Rendering and reading the kustomizations in k8s/ for the manifest tests.

`build` runs the real kustomize (`kustomize build`, or the one built into
`kubectl kustomize`, which the project's machines have); the tests that need a
rendering are skipped where neither is installed.
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return dict(loader.construct_mapping(node, deep))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_docs(path: Path) -> list[Any]:
    """Every non-empty document of a YAML file, refusing duplicate keys."""
    with open(path) as f:
        return [d for d in yaml.load_all(f, Loader=_UniqueKeyLoader) if d is not None]


def _kustomize_cmd() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@functools.cache
def _build(root: Path) -> list[dict[str, Any]]:
    cmd = _kustomize_cmd()
    if cmd is None:
        pytest.skip("no kustomize or kubectl on PATH to render k8s/")
    try:
        proc = subprocess.run([*cmd, str(root)], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{cmd[0]} did not run: {exc}")
    if proc.returncode != 0 and "unknown command" in proc.stderr:
        pytest.skip(f"{cmd[0]} has no kustomize")
    assert proc.returncode == 0, f"{' '.join(cmd)} {root}:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d is not None]


def build(root: Path) -> list[dict[str, Any]]:
    """The resources `kustomize build root` outputs (a fresh copy each call)."""
    return copy.deepcopy(_build(Path(root).resolve()))


def referenced_files(root: Path) -> set[Path]:
    """Files a kustomization directory names directly (resources, generator files, patches)."""
    (k,) = load_yaml_docs(root / "kustomization.yaml")
    out: set[Path] = set()
    for res in k.get("resources", []):
        out.add((root / res).resolve())
    for gen in k.get("configMapGenerator", []):
        for f in gen.get("files", []):
            out.add((root / f.rpartition("=")[2]).resolve())
    for p in k.get("patches", []):
        out.add((root / p["path"]).resolve())
    return out
