"""The plain decode step as a CUDA graph: one replay instead of hundreds of kernel launches from Python.

At batch 1 a 1B model's eager decode step is bound by launch overhead, not by memory bandwidth (16 layers
of about 15 kernels each, each launched from Python). A graph needs static shapes and addresses, so the
graph-shaped step differs from the eager one in three ways, none of which changes a row's result:

- rows are padded to a bucket (1, 2, 4, 8, 16, 24, 32, 48, ...); padded rows write their keys and values
  at a scratch position, the last of the cache's allocated length, which is kept past every row's keys
  (reserve(longest + 2)), and their logits are dropped;
- attention reads the cache's whole allocated length with a mask, not the longest row's length;
- one graph per bucket, captured on first use and captured again whenever the cache reallocates (its
  tensors move): every 128 positions of growth, or when the batch shrinks a lot.

Mode "capture" records and replays graphs (CUDA only); "static" runs the same graph-shaped step eagerly on
any device, which is how a CPU test checks its logic (same greedy tokens as the eager step). Only
unquantized models on the Llama fast path use it (bitsandbytes' int8 matmul picks outliers on the host);
anything else, or a capture that fails, decodes eagerly as before.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import structlog
import torch

from worker.engine.runner import Forward

log = structlog.get_logger(__name__)

BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


class GraphMode(enum.StrEnum):
    OFF = "off"
    STATIC = "static"  # the graph-shaped step, run eagerly (any device)
    CAPTURE = "capture"  # captured and replayed as CUDA graphs


def bucket(rows: int, cap: int) -> int:
    return min(next((b for b in BUCKETS if b >= rows), rows), max(cap, rows))


def unusable(model: Any, fwd: Forward, mode: GraphMode) -> str | None:
    """Why the graph-shaped step cannot serve this model, or None."""
    if fwd.fast is None:
        return "not on the Llama fast path"
    if getattr(model, "is_quantized", False) or getattr(model.config, "quantization_config", None) is not None:
        return "quantized (bitsandbytes kernels are not captured)"
    if mode is GraphMode.CAPTURE and fwd.device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    return None


@dataclass(slots=True)
class _Entry:
    tokens: torch.Tensor  # [Bp, 1] long, static input
    lens: torch.Tensor  # [Bp] long, static input: keys each row holds (padded rows: the scratch position)
    graph: Any = None  # torch.cuda.CUDAGraph when captured
    logits: torch.Tensor | None = None  # [Bp, V] float, the captured output


class DecodeGraphs:
    def __init__(self, fwd: Forward, mode: GraphMode) -> None:
        self.fwd, self.mode = fwd, mode
        self._entries: dict[int, _Entry] = {}
        self._generation: tuple[int, int, int] | None = None
        self.captures = self.replays = 0
        self.failed: str | None = None

    @property
    def active(self) -> bool:
        return self.failed is None

    @torch.inference_mode()
    def logits(self, tokens: list[int], lens: list[int], longest: int) -> torch.Tensor | None:
        """Rows [0, B) decode one token each -> logits [B, V]; None when the step must run eagerly.

        tokens, lens: per decoding row; longest: the most keys any row of the cache holds (prefill rows too)."""
        cache = self.fwd.cache
        b = len(tokens)
        bp = bucket(b, cache.rows_cap)
        cache.reserve(bp, longest + 2)  # the scratch position stays past every row's keys
        generation = (cache.rows_alloc, cache.len_cap, cache.keys[0].data_ptr())
        if generation != self._generation:
            self._entries.clear()  # the cache moved: every graph points at the old tensors
            self._generation = generation
        entry = self._entries.get(bp)
        if entry is None:
            try:
                entry = self._build(bp)
            except Exception as e:  # a capture that fails leaves the engine on the eager step for good
                self.failed = f"{type(e).__name__}: {e}"
                log.warning("engine.decode_graphs_failed", error=self.failed, rows=bp)
                return None
            self._entries[bp] = entry
        scratch = cache.len_cap - 1
        pad = bp - b
        entry.tokens.copy_(torch.tensor([*tokens, *([0] * pad)], dtype=torch.long).view(bp, 1))
        entry.lens.copy_(torch.tensor([*lens, *([scratch] * pad)], dtype=torch.long))
        if entry.graph is not None:
            entry.graph.replay()
            self.replays += 1
            assert entry.logits is not None
            return entry.logits[:b]
        return self._step(entry.tokens, entry.lens)[:b]

    def _step(self, tokens: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """tokens: [Bp, 1], lens: [Bp] -> logits [Bp, V]; static shapes throughout."""
        cache, fast = self.fwd.cache, self.fwd.fast
        assert fast is not None
        positions = lens.unsqueeze(1)  # [Bp, 1]
        keys = torch.arange(cache.len_cap, device=lens.device)  # [L]
        mask = (keys.view(1, -1) <= positions).view(lens.shape[0], 1, 1, -1)  # [Bp, 1, 1, L]
        cache.begin_static(lens.shape[0], positions)
        hidden = fast(tokens, positions, mask, cache)  # [Bp, 1, H]
        return self.fwd.logits(hidden[:, 0])

    def _build(self, bp: int) -> _Entry:
        device = self.fwd.device
        scratch = self.fwd.cache.len_cap - 1
        # static inputs pointing every row at the scratch position: the warm-up and capture write only there
        entry = _Entry(
            torch.zeros(bp, 1, dtype=torch.long, device=device),
            torch.full((bp,), scratch, dtype=torch.long, device=device),
        )
        if self.mode is not GraphMode.CAPTURE:
            return entry
        stream = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            self._step(entry.tokens, entry.lens)  # warm-up: lazy initialisation and kernel choice off the graph
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            entry.logits = self._step(entry.tokens, entry.lens)
        entry.graph = graph
        self.captures += 1
        return entry
