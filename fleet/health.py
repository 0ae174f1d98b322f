"""Liveness and readiness for Kubernetes exec probes, without an HTTP server.

A running router or worker rewrites a small JSON file every status interval
(`health_file` setting / FLEET_HEALTH_FILE); `fleet health --file F` exits 0
when the file is fresh (live) and, with `--ready`, when the process said it
is ready (consumer in its group, model loaded).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def beat(path: str | None, *, ready: bool, **extra: object) -> None:
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"ts": time.time(), "ready": ready, **extra}, f)
    os.replace(tmp, path)  # atomic: a probe never reads half a file


def check(path: str | Path, *, max_age_s: float, need_ready: bool) -> tuple[bool, str]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        return False, f"no health file: {exc}"
    age = time.time() - float(data.get("ts", 0))
    if age > max_age_s:
        return False, f"stale: last beat {age:.1f}s ago (limit {max_age_s}s)"
    if need_ready and not data.get("ready"):
        return False, "alive but not ready"
    return True, f"ok: beat {age:.1f}s ago"
