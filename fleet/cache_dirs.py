"""Entries of the model cache directory, built once, atomically, under a lock.

Every prepared model (a converted GGUF, the trained demo pair) follows one layout under the cache dir:

    NAME/              complete entry: renamed into place only once everything in it is written
    NAME.lock          flock'd while building, so concurrent builders (threads or processes) build once
    .NAME.tmp-<pid>    an entry being built by process <pid> (or a killed one's, removed by the next builder)

A builder that is interrupted removes its own staging directory; one that is killed outright leaves it, and
the process that started it (which knows the pid: `remove_staging_of`) or the next builder removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """An exclusive flock on `lock_path`; released when the block ends or the process dies."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write then rename, so readers never see a half-written file."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


def staging_name(name: str, pid: int) -> str:
    return f".{name}.tmp-{pid}"


def remove_stale(cache_dir: Path, name: str) -> None:
    """Remove leftovers of killed builds of `name`; only called while holding its lock, so none is live."""
    for stale in cache_dir.glob(f".{name}.*"):
        shutil.rmtree(stale, ignore_errors=True)


def remove_staging_of(cache_dir: Path, pid: int) -> list[Path]:
    """Remove the staging directories of process `pid` (a builder that was killed); returns what it removed."""
    removed = []
    for staging in cache_dir.glob(f".*.tmp-{pid}"):
        shutil.rmtree(staging, ignore_errors=True)
        removed.append(staging)
    return removed


def build_into_place(cache_dir: Path, name: str, build: Callable[[Path], None]) -> Path:
    """Run `build(staging)` in a private directory, then swap it in with renames (an old entry goes last).

    The caller holds the entry's lock. Whatever `build` raises (KeyboardInterrupt and SystemExit included),
    the staging directory is removed before it propagates.
    """
    remove_stale(cache_dir, name)
    staging = cache_dir / staging_name(name, os.getpid())
    staging.mkdir()
    final = cache_dir / name
    try:
        build(staging)
        retired = cache_dir / f".{name}.old-{os.getpid()}"
        if final.exists():
            final.rename(retired)
        staging.rename(final)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def ensure_entry(
    cache_dir: Path,
    name: str,
    is_complete: Callable[[Path], bool],
    build: Callable[[Path], None],
    *,
    force: bool = False,
) -> tuple[Path, bool]:
    """The complete entry `name`, built first (once, whoever else asks at the same time) if missing.

    Returns (path, built_here): callers that waited on another builder's lock find its entry complete.
    """
    cache_dir = cache_dir.expanduser()
    final = cache_dir / name
    if not force and is_complete(final):
        return final, False
    cache_dir.mkdir(parents=True, exist_ok=True)
    with locked(cache_dir / f"{name}.lock"):
        if not force and is_complete(final):
            return final, False
        build_into_place(cache_dir, name, build)
    return final, True
