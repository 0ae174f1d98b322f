"""How long a newcomer waits for the first answer: runs a command (`make up`), timestamps its output as it
arrives, notes when each start-up step shows and when the smoke answer's first text arrives, then sends
Ctrl-C to the whole process group (as a terminal does) and times the exit.

    python -m benchmarks.serving.first_answer make up                       # in a fresh clone: install included
    FLEET_CACHE_DIR=/tmp/empty python -m benchmarks.serving.first_answer make up   # nothing in the model cache

Prints one line of marks in seconds from the start; the raw output goes to first_answer.log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

MARKS = (
    ("installed", b"fleet up"),  # make echoes the command once the venv is ready
    ("converting", b"converting"),
    ("broker", b"broker Tansu"),
    ("processes", b"processes router"),
    ("workers_ready", b"worker large"),
    ("smoke_sent", b"smoke model=auto"),
)


def main(argv: list[str]) -> int:
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.stdout is not None
    seen: dict[str, float] = {}
    out = b""
    with open("first_answer.log", "wb") as log:
        while chunk := os.read(proc.stdout.fileno(), 4096):
            log.write(chunk)
            out += chunk
            now = round(time.monotonic() - t0, 1)
            for name, needle in MARKS:
                if name not in seen and needle in out:
                    seen[name] = now
            if "smoke_sent" in seen and "first_text" not in seen:
                after = out.split(b"smoke model=auto", 1)[1]
                if b"\n" in after and after.split(b"\n", 1)[1].strip():
                    seen["first_text"] = now
            if "done" not in seen and b"done model=" in out:
                seen["done"] = now
                time.sleep(1.0)
                seen["ctrl_c"] = round(time.monotonic() - t0, 1)
                os.killpg(proc.pid, signal.SIGINT)
    rc = proc.wait()
    if "ctrl_c" in seen:
        seen["exit_after_ctrl_c_s"] = round(time.monotonic() - t0 - seen["ctrl_c"], 1)
    print({**seen, "returncode": rc})
    return 0 if "first_text" in seen else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
