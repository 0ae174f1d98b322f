"""A slot KV cache: one row per running sequence, per-row lengths, views not copies.

Layout per layer: keys and values of shape [rows_cap, kv_heads, len_cap, head_dim].
The running batch occupies rows [0, n) in any order the runner likes; a forward
pass over rows [a, b) reads the view `buf[a:b, :, :kv_len]` (no gather copy),
writes each row's new keys at that row's own positions, and masks every key
beyond a row's length. This is why the batch is kept compact: finished rows are
filled by moving the last row into the hole.

On CPU a paged cache would need a gather of every key each step (a copy the
size of the whole KV cache per layer per step); the padded slot layout costs
memory for the padding instead (rows x longest row), which the scheduler's
budget bounds.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


class SlotKVCache(Cache):
    """Implements the one `Cache` method a decoder layer calls: `update(k, v, layer_idx)`."""

    def __init__(
        self,
        *,
        num_layers: int,
        kv_heads: int,
        head_dim: int,
        rows_cap: int,
        dtype: torch.dtype,
        device: torch.device,
        len_quantum: int = 128,
        row_quantum: int = 8,
    ) -> None:
        super().__init__(layers=[])
        self.num_layers, self.kv_heads, self.head_dim = num_layers, kv_heads, head_dim
        self.rows_cap, self.dtype, self.device = rows_cap, dtype, device
        self.len_quantum, self.row_quantum = len_quantum, row_quantum
        self.rows_alloc = self.len_cap = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        # set by begin() for the forward pass about to run
        self._rows = slice(0, 0)
        self._row_index = torch.zeros(0, 1, dtype=torch.long, device=device)
        self._write_pos = torch.zeros(0, 0, dtype=torch.long, device=device)
        self._kv_len = 0

    # -- memory: allocated in quanta of rows and positions, grown and shrunk with the batch ---------

    @property
    def bytes_per_token(self) -> int:
        elem = torch.empty(0, dtype=self.dtype).element_size()
        return 2 * self.num_layers * self.kv_heads * self.head_dim * elem

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    @torch.inference_mode()
    def _alloc(self, rows: int, len_cap: int) -> None:
        shape = (rows, self.kv_heads, len_cap, self.head_dim)
        new_k = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.num_layers)]
        new_v = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.num_layers)]
        keep_rows, keep_len = min(self.rows_alloc, rows), min(self.len_cap, len_cap)
        if self.keys and keep_rows and keep_len:
            for old, new in zip((*self.keys, *self.values), (*new_k, *new_v), strict=True):
                new[:keep_rows, :, :keep_len].copy_(old[:keep_rows, :, :keep_len])
        self.keys, self.values, self.rows_alloc, self.len_cap = new_k, new_v, rows, len_cap

    def reserve(self, rows: int, length: int) -> None:
        """Make room for `rows` rows of `length` positions (rounded up to the quanta)."""
        want_rows = rows if rows <= self.rows_alloc else min(_round_up(rows, self.row_quantum), self.rows_cap)
        want_len = length if length <= self.len_cap else _round_up(length, self.len_quantum)
        if want_rows > self.rows_alloc or want_len > self.len_cap:
            self._alloc(max(want_rows, self.rows_alloc), max(want_len, self.len_cap))

    def shrink(self, rows: int, length: int) -> None:
        """Give memory back when the batch needs far less than is allocated (hysteresis: 2 quanta)."""
        fit_rows = _round_up(max(rows, 1), self.row_quantum)
        fit_len = _round_up(max(length, 1), self.len_quantum)
        if self.rows_alloc >= fit_rows + 2 * self.row_quantum or self.len_cap >= fit_len + 2 * self.len_quantum:
            self._alloc(min(fit_rows, self.rows_alloc), min(fit_len, self.len_cap))

    # -- row moves (the runner keeps the batch compact) -------------------------------------------

    @torch.inference_mode()
    def move_row(self, src: int, dst: int, length: int) -> None:
        if src == dst or length <= 0:
            return
        for buf in (*self.keys, *self.values):
            buf[dst, :, :length].copy_(buf[src, :, :length])

    @torch.inference_mode()
    def swap_rows(self, a: int, b: int, length: int) -> None:
        if a == b or length <= 0:
            return
        for buf in (*self.keys, *self.values):
            tmp = buf[a, :, :length].clone()
            buf[a, :, :length].copy_(buf[b, :, :length])
            buf[b, :, :length].copy_(tmp)

    # -- one forward pass -----------------------------------------------------------------------------

    def begin(self, start: int, lens: torch.Tensor, q_len: int) -> None:
        """Prepare a forward over rows [start, start+B) with `q_len` new positions per row.

        lens: [B] long, the tokens each row already holds; row b writes positions lens[b] + j.
        """
        b = lens.shape[0]
        self._write_pos = lens.unsqueeze(1) + torch.arange(q_len, device=self.device)  # [B, q]
        self._kv_len = int(self._write_pos.max()) + 1 if b else 0
        self.reserve(start + b, self._kv_len)
        self._rows = slice(start, start + b)
        self._row_index = torch.arange(b, device=self.device).unsqueeze(1)  # [B, 1]

    def begin_static(self, rows: int, write_pos: torch.Tensor) -> None:
        """A forward over rows [0, rows) that reads every allocated position: static shapes, for a CUDA graph
        (cuda_graphs.py). write_pos: [rows, q]; the caller has reserved room and masks what a row must not see."""
        self._write_pos = write_pos
        self._kv_len = self.len_cap
        self._rows = slice(0, rows)
        self._row_index = torch.arange(rows, device=self.device).unsqueeze(1)  # [rows, 1]

    @property
    def kv_len(self) -> int:
        return self._kv_len

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        *args: object,
        **kwargs: object,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # key_states, value_states: [B, kv_heads, q, head_dim]
        k = self.keys[layer_idx][self._rows]  # [B, kv_heads, len_cap, head_dim] (view)
        v = self.values[layer_idx][self._rows]
        k[self._row_index, :, self._write_pos] = key_states.transpose(1, 2)  # indexed: [B, q, kv_heads, head_dim]
        v[self._row_index, :, self._write_pos] = value_states.transpose(1, 2)
        return k[:, :, : self._kv_len], v[:, :, : self._kv_len]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._kv_len

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self._kv_len, 0

    def get_query_offset(self, layer_idx: int = 0) -> int:
        return 0

    @property
    def is_compileable(self) -> bool:
        return False


def attention_mask(lens: torch.Tensor, q_len: int, kv_len: int) -> torch.Tensor:
    """Bool mask [B, 1, q, kv]: query j of row b (position lens[b] + j) sees keys 0..lens[b] + j."""
    q_pos = lens.unsqueeze(1) + torch.arange(q_len, device=lens.device)  # [B, q]
    keys = torch.arange(kv_len, device=lens.device)  # [kv]
    return (keys.view(1, 1, -1) <= q_pos.unsqueeze(2)).unsqueeze(1)
