"""End to end through the engine: sampled output with speculation keeps the target's distribution.

An 8-token vocabulary, a random target and an unrelated random draft (so many drafts are
rejected). Every request has the same prompt; its first token comes from the prefill, the next
ones from draft-and-verify steps. The second token's empirical distribution, given the first,
must match the target's own conditional probabilities (chi-square, fixed seeds).
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tests.worker.engine.helpers import req, run
from worker.engine.continuous import ContinuousEngine, EngineConfig
from worker.loader import ModelBundle

VOCAB = 8


def tiny_vocab_model(seed: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=False, initializer_range=0.5,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config).eval()


def test_speculative_sampling_through_the_engine_keeps_the_target_distribution() -> None:
    stats = pytest.importorskip("scipy.stats")
    target, draft = tiny_vocab_model(0), tiny_vocab_model(1)
    bundle = ModelBundle(
        tokenizer=None, model=target, draft=draft, eos_token_ids=frozenset(), weights_bytes=1,
        draft_weights_bytes=1, max_model_len=64, device=torch.device("cpu"), dtype=torch.float32,
        kv_dtype=torch.float32, vocab_size=VOCAB,
    )  # fmt: skip
    engine = ContinuousEngine(
        bundle, EngineConfig(max_running=16, spec_max_batch_size=64, num_speculative_tokens=2, seed=7)
    )
    prompt, n = [1, 5, 2, 7], 2400
    res = run(engine, [(i // 16, req(f"r{i}", prompt, 3, temperature=1.0)) for i in range(n)])
    pairs = Counter((r.tokens[0], r.tokens[1]) for r in res.values())
    st = engine.stats()
    assert st.spec_draft_tokens > 0 and 0 < st.spec_accepted_tokens < st.spec_draft_tokens

    with torch.inference_mode():
        first = torch.softmax(target(torch.tensor([prompt])).logits[0, -1].double(), -1)  # [V]
    firsts = Counter(a for a, _ in pairs.elements())
    assert stats.chisquare([firsts[t] for t in range(VOCAB)], (first * n).tolist()).pvalue > 1e-3
    tested = 0
    for t1, count in firsts.most_common(3):
        if count < 200:
            break
        with torch.inference_mode():
            second = torch.softmax(target(torch.tensor([[*prompt, t1]])).logits[0, -1].double(), -1)
        observed = [pairs[(t1, t)] for t in range(VOCAB)]
        assert stats.chisquare(observed, (second * count).tolist()).pvalue > 1e-3, (t1, observed)
        tested += 1
    assert tested >= 2
