"""Where a model spec from the settings points: a checkpoint directory on disk.

"gguf:MODULE/FILE.gguf" (or "gguf:/path/FILE.gguf") names a GGUF checkpoint, served from its converted
directory in the cache (`fleet.gguf_models` converts it; `fleet up`, `fleet models prepare` and each worker
run that first). "demo:large" and "demo:small" name the demo models in the cache directory; anything else
is a path, which must exist. Lower layer: the worker's loader uses this, and it imports nothing of the
demo-model training code (`fleet.demo_models` builds the models; `fleet up` and `fleet models build` run it).
"""

from __future__ import annotations

import json
from pathlib import Path

from fleet import gguf_models

RECIPE_VERSION = 1
METADATA_FILE = "demo.json"  # written last by a build: its presence marks a complete build
DEMO_PREFIX = "demo:"
DEMO_NAMES = ("large", "small")


def demo_dir_name(seed: int) -> str:
    """Versioned, so a recipe change that bumps RECIPE_VERSION builds next to the old models."""
    return f"demo-v{RECIPE_VERSION}-seed{seed}"


def demo_metadata(root: Path) -> dict[str, object] | None:
    """A complete demo build's metadata (both checkpoints present, metadata written last), else None."""
    try:
        metadata = json.loads((root / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metadata, dict) or not all((root / n / "model.safetensors").is_file() for n in DEMO_NAMES):
        return None
    return metadata


def resolve_model_path(spec: str, cache_dir: Path) -> Path:
    """The checkpoint directory for `spec`; never builds or converts anything."""
    if gguf_models.is_gguf_spec(spec):
        path = gguf_models.converted_path(spec, cache_dir)
        if not gguf_models.is_complete(path):
            raise FileNotFoundError(
                f"model {spec!r} is not converted yet in {cache_dir}; run `fleet models prepare` "
                "(a worker and `fleet up` do it before they load)"
            )
        return path
    if spec.startswith(DEMO_PREFIX):
        which = spec.removeprefix(DEMO_PREFIX)
        if which not in DEMO_NAMES:
            raise ValueError(f"unknown demo model {spec!r}; expected one of {[DEMO_PREFIX + n for n in DEMO_NAMES]}")
        root = cache_dir.expanduser() / demo_dir_name(0)
        if demo_metadata(root) is None:
            raise FileNotFoundError(
                f"demo model {spec!r} is not built in {cache_dir}; build it with `fleet models build` "
                "(python -m fleet.demo_models), or start the fleet with `fleet up`, which builds it"
            )
        return root / which
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model path {spec!r} does not exist (resolved to {path})")
    return path
