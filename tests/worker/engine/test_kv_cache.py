"""The slot KV cache: per-row writes, exact masks, row moves, memory in quanta."""

from __future__ import annotations

from collections.abc import Callable

import torch

from tests.worker.engine.helpers import prompts, req, run, without_draft, without_eos
from worker.engine.continuous import ContinuousEngine
from worker.engine.kv_cache import SlotKVCache, attention_mask
from worker.loader import ModelBundle


def cache(**kw: int) -> SlotKVCache:
    args = {"num_layers": 2, "kv_heads": 1, "head_dim": 2, "rows_cap": 16, "len_quantum": 8, "row_quantum": 4}
    args.update(kw)
    return SlotKVCache(dtype=torch.float32, device=torch.device("cpu"), **args)


@torch.inference_mode()  # the cache's tensors are inference tensors, as in the engine
def test_each_row_writes_at_its_own_length_and_reads_a_view() -> None:
    c = cache()
    lens = torch.tensor([0, 3])
    c.begin(0, lens, q_len=2)
    k = torch.arange(8, dtype=torch.float32).view(2, 1, 2, 2)  # [B, heads, q, dim]
    keys, _ = c.update(k, -k, layer_idx=1)
    assert keys.shape == (2, 1, 5, 2) and c.kv_len == 5
    assert keys.data_ptr() == c.keys[1].data_ptr()  # a view of the cache, not a copy
    assert torch.equal(c.keys[1][0, 0, 0:2], k[0, 0]) and torch.equal(c.keys[1][1, 0, 3:5], k[1, 0])
    assert torch.equal(c.values[1][1, 0, 3:5], -k[1, 0])
    assert c.keys[0].abs().sum() == 0  # other layers untouched


def test_the_mask_sees_exactly_each_rows_own_prefix() -> None:
    m = attention_mask(torch.tensor([0, 3]), q_len=2, kv_len=5)  # [B, 1, q, kv]
    assert m[0, 0].tolist() == [[True, False, False, False, False], [True, True, False, False, False]]
    assert m[1, 0].tolist() == [[True, True, True, True, False], [True, True, True, True, True]]


@torch.inference_mode()
def test_memory_grows_and_shrinks_in_quanta_and_keeps_the_data() -> None:
    c = cache()
    assert c.nbytes == 0
    c.reserve(rows=3, length=10)
    assert (c.rows_alloc, c.len_cap) == (4, 16)
    assert c.nbytes == 2 * 2 * 4 * 16 * 2 * 4  # keys and values, layers, rows, positions, dim, float32
    c.keys[0][2, 0, 9, 0] = 7.0
    c.reserve(rows=9, length=20)
    assert (c.rows_alloc, c.len_cap) == (12, 24) and c.keys[0][2, 0, 9, 0] == 7.0
    c.shrink(rows=3, length=10)
    assert (c.rows_alloc, c.len_cap) == (4, 16) and c.keys[0][2, 0, 9, 0] == 7.0
    c.swap_rows(2, 0, length=10)
    assert c.keys[0][0, 0, 9, 0] == 7.0 and c.keys[0][2, 0, 9, 0] == 0.0


def test_kv_memory_stays_within_the_budget(bundle: ModelBundle, make_engine: Callable[..., ContinuousEngine]) -> None:
    budget = 256
    engine = make_engine(without_eos(without_draft(bundle)), max_batch_tokens=budget, max_running=8)
    peak = 0
    arrivals = [(i, req(f"r{i}", p, 24)) for i, p in enumerate(prompts(10, seed=12, lo=10, hi=30))]
    pending = sorted(arrivals, key=lambda a: a[0])
    step = 0
    while pending or engine.has_unfinished():
        while pending and pending[0][0] <= step:
            engine.add_request(pending.pop(0)[1])
        engine.step()
        s = engine.stats()
        assert s.extra["kv_reserved_tokens"] <= budget
        peak = max(peak, s.kv_cache_bytes)
        step += 1
    per_token = engine.kv_bytes_per_token
    # rows are allocated 8 at a time and positions 128 at a time: the bound is the budget plus those quanta
    assert 0 < peak <= (budget + 8 * 128) * per_token
    assert run(engine, []) == {}


@torch.inference_mode()
def test_the_fast_path_computes_what_the_models_own_forward_does(
    bundle: ModelBundle, repeating_bundle: ModelBundle
) -> None:
    from worker.engine.runner import Forward, new_cache

    for b in (bundle, repeating_bundle):  # grouped-query attention and plain multi-head
        fast = Forward(b.model, new_cache(b.model, 4, torch.float32, b.device), b.device, fast=True)
        slow = Forward(b.model, new_cache(b.model, 4, torch.float32, b.device), b.device, fast=False)
        assert fast.fast is not None and slow.fast is None
        tokens = torch.tensor(prompts(3, seed=13, lo=12, hi=13))
        lens = torch.tensor([0, 0, 0])
        for step in range(3):  # a prefill, then decode steps at staggered lengths
            out_fast = fast.logits(fast.hidden(0, tokens, lens))
            out_slow = slow.logits(slow.hidden(0, tokens, lens))
            torch.testing.assert_close(out_fast, out_slow, rtol=1e-5, atol=1e-5)
            lens = lens + tokens.shape[1] + torch.tensor([0, step, 2 * step])
            tokens = out_fast[:, -1:].argmax(-1)
