"""Output processing: incremental detokenization, stop strings, chunk coalescing.

Pure apart from the tokenizer's `decode`; no Kafka, no torch.
"""

from __future__ import annotations

from typing import Any


class IncrementalDetokenizer:
    """Turns token ids into text deltas; holds back text that may be the start of a
    stop string or an incomplete UTF-8 sequence; reports when a stop string appears."""

    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self._tok = tokenizer
        self._stop = [s for s in stop if s]
        self._ids: list[int] = []
        self._emitted = 0  # characters of the decoded text already handed out
        self.text = ""  # the final text so far (stop string excluded)
        self.stopped = False
        self.num_tokens = 0

    def push(self, token_ids: list[int]) -> str:
        """Add tokens; return the newly safe text (possibly empty)."""
        if self.stopped or not token_ids:
            return ""
        self._ids.extend(token_ids)
        self.num_tokens += len(token_ids)
        full: str = self._tok.decode(self._ids, skip_special_tokens=True)
        if full.endswith("\ufffd"):  # an incomplete multi-byte character: wait for its remaining bytes
            full = full.rstrip("\ufffd")
        cut = self._find_stop(full)
        if cut is not None:
            self.stopped = True
            return self._emit(full[:cut])
        return self._emit(full[: len(full) - self._held_back(full)])

    def finish(self) -> str:
        """At the end of generation: release text held back for a possible stop string."""
        if self.stopped:
            return ""
        full: str = self._tok.decode(self._ids, skip_special_tokens=True)
        return self._emit(full)

    def _emit(self, upto: str) -> str:
        if len(upto) <= self._emitted:
            return ""
        delta = upto[self._emitted :]
        self._emitted = len(upto)
        self.text = upto
        return delta

    def _find_stop(self, full: str) -> int | None:
        # search only where a new match can be: the tail after what was emitted, widened by the stop length
        best: int | None = None
        for s in self._stop:
            i = full.find(s, max(0, self._emitted - len(s) + 1))
            if i != -1 and (best is None or i < best):
                best = i
        return best

    def _held_back(self, full: str) -> int:
        """Length of the longest suffix of `full` that is a proper prefix of a stop string."""
        hold = 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(full)), hold, -1):
                if full.endswith(s[:n]):
                    hold = n
                    break
        return hold


class ChunkCoalescer:
    """At most one chunk per interval or per `max_tokens` tokens; the first token goes out at once."""

    def __init__(self, interval_ms: float, max_tokens: int) -> None:
        self._interval_s = interval_ms / 1000
        self._max_tokens = max(1, max_tokens)
        self._buf: list[str] = []
        self._tokens = 0
        self._last_s: float | None = None

    def add(self, text: str, n_tokens: int, now_s: float) -> str | None:
        if text:
            self._buf.append(text)
        self._tokens += n_tokens
        if not self._buf:
            return None
        if self._last_s is None or self._tokens >= self._max_tokens or now_s - self._last_s >= self._interval_s:
            return self._take(now_s)
        return None

    def drain(self, now_s: float) -> str | None:
        return self._take(now_s) if self._buf else None

    def _take(self, now_s: float) -> str:
        out = "".join(self._buf)
        self._buf.clear()
        self._tokens = 0
        self._last_s = now_s
        return out
