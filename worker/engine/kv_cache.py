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
        len_cap: int = 128,
        len_quantum: int = 128,
    ) -> None:
        super().__init__(layers=[])
        self.num_layers, self.kv_heads, self.head_dim = num_layers, kv_heads, head_dim
        self.rows_cap, self.dtype, self.device = rows_cap, dtype, device
        self.len_quantum = len_quantum
        self.len_cap = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self._alloc(_round_up(max(len_cap, 1), len_quantum))
        # set by begin() for the forward pass about to run
        self._rows = slice(0, 0)
        self._row_index = torch.zeros(0, 1, dtype=torch.long, device=device)
        self._write_pos = torch.zeros(0, 0, dtype=torch.long, device=device)
        self._kv_len = 0

    # -- memory -------------------------------------------------------------------------------------

    @property
    def bytes_per_token(self) -> int:
        elem = torch.empty(0, dtype=self.dtype).element_size()
        return 2 * self.num_layers * self.kv_heads * self.head_dim * elem

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def _alloc(self, len_cap: int) -> None:
        shape = (self.rows_cap, self.kv_heads, len_cap, self.head_dim)
        new_k = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.num_layers)]
        new_v = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.num_layers)]
        keep = min(self.len_cap, len_cap)
        if self.keys:
            for old, new in zip((*self.keys, *self.values), (*new_k, *new_v), strict=True):
                new[:, :, :keep].copy_(old[:, :, :keep])
        self.keys, self.values, self.len_cap = new_k, new_v, len_cap

    def ensure_len(self, needed: int) -> None:
        """Grow the length capacity (in quanta, at least doubling) so `needed` positions fit."""
        if needed > self.len_cap:
            self._alloc(max(_round_up(needed, self.len_quantum), 2 * self.len_cap))

    def shrink_to(self, needed: int) -> None:
        """Give memory back when the longest row is far below the capacity."""
        target = _round_up(max(needed, 1), self.len_quantum)
        if target * 4 <= self.len_cap:
            self._alloc(max(target * 2, self.len_quantum))

    # -- row moves (the runner keeps the batch compact) -------------------------------------------

    def move_row(self, src: int, dst: int, length: int) -> None:
        if src == dst or length <= 0:
            return
        for buf in (*self.keys, *self.values):
            buf[dst, :, :length].copy_(buf[src, :, :length])

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
        self.ensure_len(int(lens.max()) + q_len if b else q_len)
        self._rows = slice(start, start + b)
        self._row_index = torch.arange(b, device=self.device).unsqueeze(1)  # [B, 1]
        self._write_pos = lens.unsqueeze(1) + torch.arange(q_len, device=self.device)  # [B, q]
        self._kv_len = int(self._write_pos.max()) + 1 if b else 0

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
        k[self._row_index, :, self._write_pos] = key_states.transpose(
            1, 2
        )  # indexed: [B, q, kv_heads, head_dim]
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
