"""`python -m fleet.demo_models`: build (or find) the demo models and print where they are."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fleet.demo_models.cache import ensure_demo_models
from fleet.runtime import run_interruptible
from fleet.settings import Settings


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build if needed, print the paths and the build's measurements as JSON."""
    parser = argparse.ArgumentParser(prog="python -m fleet.demo_models", description=__doc__)
    parser.add_argument("--cache-dir", type=Path, default=Path(Settings().cache_dir), help="where models are kept")
    parser.add_argument("--seed", type=int, default=0, help="training seed (same seed, same weights)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete build exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    return run_interruptible(lambda: _build(args), "fleet.demo_models")


def _build(args: argparse.Namespace) -> int:
    models = ensure_demo_models(args.cache_dir, seed=args.seed, progress=not args.no_progress, force=args.force)
    metadata = models.metadata()
    summary = {
        "large": str(models.large),
        "small": str(models.small),
        "tokenizer": str(models.tokenizer),
        **{
            key: metadata[key]
            for key in (
                "params",
                "build_seconds",
                "agreement_heldout",
                "agreement_target_greedy",
                "latency_ratio",
                "sample",
            )
        },
    }
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
