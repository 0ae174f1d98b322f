"""Per-token CPU cost of output processing (worker/output.py).

One request's 2,000 output tokens pushed one at a time through IncrementalDetokenizer with 16 stop
strings of 40 characters that never match; the best of 3 runs, in CPU time (process_time), so a busy
machine skews it less. The text must equal a full decode of the same ids.

    python -m benchmarks.engine.output_processing [--tokenizer HF_DIR] [--module worker.output]
"""

from __future__ import annotations

import argparse
import importlib
import time
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokenizer", help="an HF tokenizer directory (default: the simulated byte tokenizer)")
    ap.add_argument("--module", default="worker.output", help="the module holding IncrementalDetokenizer")
    args = ap.parse_args()
    detok_cls: Any = importlib.import_module(args.module).IncrementalDetokenizer
    tok: Any
    if args.tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        from worker.engine.simulated import ByteTokenizer

        tok = ByteTokenizer()
    stops = [f"### never-matching stop string number {i:02d} ###"[:40] for i in range(16)]
    ids = list(tok("The quick brown fox jumps over the lazy dog; ### never-matching stop " * 200)["input_ids"])[:2000]
    best = float("inf")
    for _ in range(3):
        d = detok_cls(tok, stops)
        t0 = time.process_time()
        for i in ids:
            d.push([i])
        d.finish()
        best = min(best, (time.process_time() - t0) / len(ids))
    assert d.text == tok.decode(ids, skip_special_tokens=True), "the incremental text differs from a full decode"
    print(f"{best * 1e6:.1f} us CPU/token over {len(ids)} tokens, 16 stop strings of 40 chars, {type(tok).__name__}")


if __name__ == "__main__":
    main()
