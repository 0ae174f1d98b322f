"""The continuous-batching engine on a real tiny checkpoint (CPU, float32)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pytest
import torch

from tests.worker.engine.helpers import prompts, req, run, without_draft, without_eos
from worker.engine.api import Engine, EngineRequest, FinishKind, SamplingParams
from worker.engine.continuous import ContinuousEngine
from worker.loader import ModelBundle

MakeEngine = Callable[..., ContinuousEngine]


def reference(b: ModelBundle, prompt: list[int], n: int) -> list[int]:
    """Greedy tokens from transformers' own generate, one request at a time."""
    with torch.inference_mode():
        out = b.model.generate(
            torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0
        )
    return [int(t) for t in out[0, len(prompt) :]]


def test_it_is_an_engine(bundle: ModelBundle, make_engine: MakeEngine) -> None:
    engine = make_engine(bundle)
    assert isinstance(engine, Engine) and engine.simulated is False


def test_batched_greedy_equals_unbatched_for_staggered_requests(bundle: ModelBundle, make_engine: MakeEngine) -> None:
    b = without_eos(without_draft(bundle))
    ps = prompts(8, seed=1, lo=2, hi=45)
    lengths = [5, 17, 9, 24, 3, 12, 20, 7]
    arrivals = [0, 0, 1, 2, 4, 4, 9, 15]
    # a small prefill chunk so long prompts are prefilled over several steps next to decodes
    engine = make_engine(b, prefill_chunk_tokens=16, max_running=5)
    res = run(
        engine,
        [(t, req(f"r{i}", p, n)) for i, (t, p, n) in enumerate(zip(arrivals, ps, lengths, strict=True))],
    )
    for i, (p, n) in enumerate(zip(ps, lengths, strict=True)):
        assert res[f"r{i}"].tokens == reference(b, p, n), f"request r{i}"
        assert res[f"r{i}"].finished is FinishKind.LENGTH
        assert res[f"r{i}"].last.num_prompt_tokens == len(p)
    assert engine.stats().running == 0


SPEC_METHODS = {  # name: (model, engine settings)
    "draft": ("varied", {}),
    "draft-early-stop": ("varied", {"spec_min_draft_prob": 0.5}),
    "ngram": ("repeating", {"ngram_speculation": True}),
    "hybrid": ("repeating", {"ngram_speculation": True}),
}


@pytest.mark.parametrize("method", list(SPEC_METHODS))
def test_speculative_greedy_equals_plain_greedy(
    bundle: ModelBundle, repeating_bundle: ModelBundle, make_engine: MakeEngine, method: str
) -> None:
    # prompt lookup proposes from the sequence itself: it needs a model that repeats itself
    model, settings = SPEC_METHODS[method]
    base = without_eos(bundle if model == "varied" else repeating_bundle)
    plain_b = without_draft(base)
    spec_b = plain_b if method == "ngram" else base
    ps = prompts(6, seed=2)
    arrivals = [(i // 2, req(f"r{i}", p, 20)) for i, p in enumerate(ps)]
    plain = run(make_engine(plain_b), arrivals)
    # spec_max_batch_size 4 with 6 requests: steps switch between speculative and plain decoding
    engine = make_engine(spec_b, spec_max_batch_size=4, **settings)
    spec = run(engine, arrivals)
    for rid, r in plain.items():
        assert spec[rid].tokens == r.tokens, rid
    stats = engine.stats()
    assert stats.extra["spec_steps"] > 0
    assert 0 < stats.spec_accepted_tokens <= stats.spec_draft_tokens
    if model == "varied":  # the noisy draft agrees often, not always: both branches of verification ran
        assert stats.spec_accepted_tokens < stats.spec_draft_tokens


def test_hybrid_speculation_uses_both_proposers(repeating_bundle: ModelBundle, make_engine: MakeEngine) -> None:
    from worker.engine.speculative import HybridProposer

    engine = make_engine(without_eos(repeating_bundle), spec_max_batch_size=8, ngram_speculation=True)
    proposer = engine._spec.proposer if engine._spec else None
    assert isinstance(proposer, HybridProposer)
    calls = {"lookup": 0, "draft": 0}
    lookup, draft = proposer.lookup.propose, proposer.draft.propose

    def count_lookup(*a: object) -> object:
        out = lookup(*a)  # type: ignore[arg-type]
        calls["lookup"] += sum(1 for d in out[0] if d)
        return out

    def count_draft(*a: object) -> object:
        calls["draft"] += 1
        return draft(*a)  # type: ignore[arg-type]

    proposer.lookup.propose, proposer.draft.propose = count_lookup, count_draft  # type: ignore[method-assign]
    run(engine, [(0, req(f"r{i}", p, 24)) for i, p in enumerate(prompts(4, seed=15))])
    assert calls["lookup"] > 0 and calls["draft"] > 0


def test_acceptance_accounting(bundle: ModelBundle, make_engine: MakeEngine) -> None:
    engine = make_engine(without_eos(bundle), spec_max_batch_size=8, num_speculative_tokens=3)
    ps = prompts(4, seed=3)
    res = run(engine, [(0, req(f"r{i}", p, 30)) for i, p in enumerate(ps)])
    total_d = total_a = 0
    for r in res.values():
        prev_d = prev_a = 0
        for out in r.outputs:
            assert out.spec_draft_tokens >= prev_d and out.spec_accepted_tokens >= prev_a  # cumulative
            assert out.spec_accepted_tokens - prev_a <= out.spec_draft_tokens - prev_d <= 3
            # one verification emits the accepted drafts plus one token of the target's
            if out.spec_draft_tokens > prev_d and out.finished is None:
                assert len(out.new_token_ids) == out.spec_accepted_tokens - prev_a + 1
            prev_d, prev_a = out.spec_draft_tokens, out.spec_accepted_tokens
        assert len(r.tokens) == 30
        total_d, total_a = total_d + prev_d, total_a + prev_a
    stats = engine.stats()
    assert (stats.spec_draft_tokens, stats.spec_accepted_tokens) == (total_d, total_a)
    assert total_d > 0


def test_a_seeded_sampled_request_draws_the_same_tokens_in_any_batch(
    bundle: ModelBundle, make_engine: MakeEngine
) -> None:
    b = without_eos(bundle)
    seeded = req("s", prompts(1, seed=4)[0], 24, temperature=0.9, top_p=0.95, seed=1234)
    alone = run(make_engine(b, spec_max_batch_size=0), [(0, seeded)])["s"].tokens
    others = [(i % 3, req(f"o{i}", p, 10 + i, temperature=0.7 * (i % 2))) for i, p in enumerate(prompts(6, seed=5))]
    crowded = run(make_engine(b, spec_max_batch_size=4), [*others, (2, seeded)])["s"].tokens
    assert crowded == alone
    different_seed = dataclasses.replace(seeded, params=dataclasses.replace(seeded.params, seed=99))
    assert run(make_engine(b), [(0, different_seed)])["s"].tokens != alone


def test_sampled_requests_speculate_and_finish(bundle: ModelBundle, make_engine: MakeEngine) -> None:
    engine = make_engine(without_eos(bundle), spec_max_batch_size=8)
    ps = prompts(3, seed=6)
    res = run(engine, [(0, req(f"r{i}", p, 25, temperature=1.0)) for i, p in enumerate(ps)])
    assert all(len(r.tokens) == 25 and r.finished is FinishKind.LENGTH for r in res.values())
    assert all(0 <= t < bundle.vocab_size for r in res.values() for t in r.tokens)
    assert engine.stats().spec_draft_tokens > 0


def test_cancellation_frees_the_slot_within_one_step(bundle: ModelBundle, make_engine: MakeEngine) -> None:
    engine = make_engine(without_eos(bundle), max_running=1)
    a, b = prompts(2, seed=7)
    engine.add_request(req("a", a, 1000))
    engine.add_request(req("b", b, 3))
    engine.step()
    assert (engine.stats().running, engine.stats().waiting) == (1, 1)
    engine.abort_request("a", FinishKind.CANCELLED)
    engine.abort_request("unknown", FinishKind.CANCELLED)  # ignored
    outs = {o.request_id: o for o in engine.step()}
    assert outs["a"].finished is FinishKind.CANCELLED and outs["a"].new_token_ids == []
    assert "b" in outs and outs["b"].new_token_ids  # admitted and prefilled in the same step
    assert (engine.stats().running, engine.stats().waiting) == (1, 0)
    res = run(engine, [])
    assert res["b"].finished is FinishKind.LENGTH


def test_a_passed_deadline_expires_running_and_waiting_requests(bundle: ModelBundle, make_engine: MakeEngine) -> None:
    engine = make_engine(without_eos(bundle), max_running=1)
    a, b = prompts(2, seed=8)
    engine.add_request(dataclasses.replace(req("a", a, 1000), deadline_s=time.time() + 0.3))
    engine.add_request(dataclasses.replace(req("b", b, 1000), deadline_s=time.time() + 0.3))
    engine.step()
    time.sleep(0.35)
    outs = {o.request_id: o.finished for o in engine.step()}
    assert outs == {"a": FinishKind.EXPIRED, "b": FinishKind.EXPIRED}
    assert not engine.has_unfinished()


def test_stop_conditions(bundle: ModelBundle, make_engine: MakeEngine) -> None:
    p = prompts(1, seed=9)[0]
    ref = reference(bundle, p, 12)
    eos = ref[4]
    first = ref.index(eos)
    for spec in (0, 4):
        b = dataclasses.replace(bundle, eos_token_ids=frozenset({eos}))
        r = run(make_engine(b, spec_max_batch_size=spec), [(0, req("r", p, 12))])["r"]
        assert (r.tokens, r.finished) == (ref[: first + 1], FinishKind.STOP)  # the EOS token is the last one
        # a full context ends the request with LENGTH, speculation or not
        short = dataclasses.replace(without_eos(bundle), max_model_len=len(p) + 6)
        r = run(make_engine(short, spec_max_batch_size=spec), [(0, req("r", p, 50))])["r"]
        assert (r.tokens, r.finished) == (reference(bundle, p, 6), FinishKind.LENGTH)


def test_nothing_to_generate_finishes_at_once(bundle: ModelBundle, make_engine: MakeEngine) -> None:
    res = run(make_engine(bundle), [(0, req("zero", [5, 6, 7], 0))])
    assert (res["zero"].tokens, res["zero"].finished, res["zero"].last.num_prompt_tokens) == (
        [],
        FinishKind.LENGTH,
        3,
    )


def test_prompts_the_engine_cannot_take_are_refused(bundle: ModelBundle, make_engine: MakeEngine) -> None:
    engine = make_engine(bundle)
    with pytest.raises(ValueError):
        engine.add_request(req("empty", []))
    with pytest.raises(ValueError):
        engine.add_request(req("long", [5] * bundle.max_model_len))


def test_stats_report_the_batch_and_the_memory(bundle: ModelBundle, make_engine: MakeEngine) -> None:
    engine = make_engine(without_eos(bundle), max_running=2, spec_max_batch_size=0)
    for i, p in enumerate(prompts(3, seed=10)):
        engine.add_request(req(f"r{i}", p, 5))
    s = engine.stats()
    assert (s.running, s.waiting, s.max_running) == (0, 3, 2)
    engine.step()
    s = engine.stats()
    assert (s.running, s.waiting) == (2, 1)
    assert s.weights_bytes == bundle.weights_bytes + bundle.draft_weights_bytes > 0
    assert s.kv_cache_bytes > 0 and s.extra["kv_reserved_tokens"] > 0
    run(engine, [])
    s = engine.stats()
    assert (s.running, s.waiting) == (0, 0) and s.extra["kv_reserved_tokens"] == 0


def test_rows_come_and_go_while_the_draft_sits_out(bundle: ModelBundle, make_engine: MakeEngine) -> None:
    """Two requests speculate, ten more join (no speculation now: the draft cache is not used and has
    fewer rows), the first two leave and the batch is compacted: the draft's rows must follow."""
    ps = prompts(12, seed=14)
    lengths = [16, 16, *[20 + (7 * i) % 11 for i in range(10)]]
    arrivals = [(0 if i < 2 else 4, req(f"r{i}", p, n)) for i, (p, n) in enumerate(zip(ps, lengths, strict=True))]
    engine = make_engine(without_eos(bundle), spec_max_batch_size=2, max_running=12)
    res = run(engine, arrivals)
    plain = run(make_engine(without_eos(without_draft(bundle))), arrivals)
    assert {k: r.tokens for k, r in res.items()} == {k: r.tokens for k, r in plain.items()}
    assert engine.stats().extra["spec_steps"] > 2


@pytest.mark.parametrize("speculate", [False, True])
def test_a_preempted_batch_request_goes_on_with_the_same_greedy_tokens(
    bundle: ModelBundle, make_engine: MakeEngine, speculate: bool
) -> None:
    """Two batch requests fill the KV budget; an interactive one arrives and preempts the newest of them at once
    (real KV freed, real prefill of prompt + generated on readmission). Every request's greedy tokens equal its
    solo reference, the preempted one's included."""
    b = without_eos(bundle if speculate else without_draft(bundle))
    ps = prompts(3, seed=5, lo=6, hi=12)
    # budget 128 tokens: each batch request reserves ~prompt + 40, so a third row never fits beside them
    engine = make_engine(b, max_batch_tokens=128, max_running=4, prefill_chunk_tokens=64)
    batch = [EngineRequest(f"b{i}", ps[i], SamplingParams(max_tokens=40), priority=1) for i in range(2)]
    inter = EngineRequest("i", ps[2], SamplingParams(max_tokens=8))
    res = run(engine, [(0, batch[0]), (0, batch[1]), (6, inter)])
    assert engine.stats().extra["preempted"] >= 1
    for r in (*batch, inter):
        assert res[r.request_id].tokens == reference(b, r.prompt_token_ids, r.params.max_tokens), r.request_id
        assert res[r.request_id].finished is FinishKind.LENGTH
