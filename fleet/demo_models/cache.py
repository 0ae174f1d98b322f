"""The demo models' cache directory: build once, atomically, under a lock (`fleet.cache_dirs`); resolve
model specs.

Layout under the cache dir:

    demo-v1-seed0/            complete build (renamed into place only once everything is written)
        large/  small/        HF-format checkpoints, each with the shared tokenizer
        demo.json             metadata: seed, recipe fingerprint, sizes, build time, measurements
    demo-v1-seed0.lock        flock'd while building, so concurrent callers build only once
    .demo-v1-seed0.tmp-<pid>  a build in progress (or a killed one, removed by the next builder)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.cache_dirs import ensure_entry, write_json
from fleet.demo_models.build import DEMO_RECIPE, BuildRecipe, build_demo_models
from fleet.model_paths import DEMO_NAMES, DEMO_PREFIX, METADATA_FILE, demo_dir_name, demo_metadata
from fleet.model_paths import resolve_model_path as resolve_built_model_path


@dataclass(frozen=True, slots=True)
class DemoModels:
    """Paths of a complete demo build. `tokenizer` is the directory to load the shared tokenizer from."""

    root: Path
    large: Path
    small: Path
    tokenizer: Path

    @classmethod
    def at(cls, root: Path) -> DemoModels:
        return cls(root=root, large=root / "large", small=root / "small", tokenizer=root / "large")

    def metadata(self) -> dict[str, Any]:
        """What the build recorded (seed, sizes, build time, agreement, latency ratio, a sample)."""
        loaded: dict[str, Any] = json.loads((self.root / METADATA_FILE).read_text())
        return loaded


def _is_complete(root: Path, recipe: BuildRecipe) -> bool:
    """A build counts only if its metadata was written (last) and matches the current recipe."""
    metadata = demo_metadata(root)
    return metadata is not None and metadata.get("fingerprint") == recipe.fingerprint()


def _build(staging: Path, *, seed: int, recipe: BuildRecipe, progress: bool) -> None:
    metadata = build_demo_models(staging, seed=seed, recipe=recipe, progress=progress)
    write_json(staging / METADATA_FILE, metadata)  # last: its presence marks a complete build


def ensure_demo_models(
    cache_dir: Path,
    *,
    seed: int = 0,
    progress: bool = True,
    force: bool = False,
    recipe: BuildRecipe = DEMO_RECIPE,
) -> DemoModels:
    """Return the demo models for `seed`, building them first if missing, stale or `force`d.

    Concurrent callers (threads or processes) serialise on a lock file; the ones that waited find
    the finished build and return it without building again (unless they asked for `force`).
    """
    root, _ = ensure_entry(
        cache_dir,
        demo_dir_name(seed),
        lambda path: _is_complete(path, recipe),
        lambda staging: _build(staging, seed=seed, recipe=recipe, progress=progress),
        force=force,
    )
    return DemoModels.at(root)


def resolve_model_path(spec: str, cache_dir: Path, *, build_missing: bool = True) -> Path:
    """`fleet.model_paths.resolve_model_path`, building the demo models first (or again, when the recipe
    changed) if `spec` names one and `build_missing`."""
    if build_missing and spec.startswith(DEMO_PREFIX) and spec.removeprefix(DEMO_PREFIX) in DEMO_NAMES:
        ensure_demo_models(cache_dir)
    return resolve_built_model_path(spec, cache_dir)
