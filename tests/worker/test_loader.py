"""Loading checkpoints with from_pretrained, full precision and bitsandbytes 8-bit / 4-bit,
and generating through the engine in process (CPU)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from fleet.settings import ModelSettings, Quantization
from tests.fixtures_models import DEMO_BUILD_TIMEOUT_S, needs_demo_models
from tests.worker.engine.helpers import Pair, noisy_copy, own_tiny_target, prompts, req, run, without_eos
from worker.engine.continuous import ContinuousEngine, EngineConfig
from worker.loader import load_bundle, quantization_config


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads; on a shared CPU OpenMP's barrier makes them slow."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def engine_pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    root = tmp_path_factory.mktemp("loader_pair")
    target = own_tiny_target(root / "target")
    return Pair(target, noisy_copy(target, root / "draft", scale=0.02))


def test_full_precision_bundle(engine_pair: Pair, tmp_path: Path) -> None:
    ms = ModelSettings(name="t", path=str(engine_pair.target), draft_path=str(engine_pair.draft), max_model_len=100)
    b = load_bundle(ms, tmp_path)
    assert b.draft is not None and b.device == torch.device("cpu") and b.dtype == torch.float32
    params = sum(p.numel() * p.element_size() for p in b.model.parameters())
    assert b.weights_bytes >= params > 0 and b.draft_weights_bytes > 0
    assert b.tokenizer.eos_token_id in b.eos_token_ids
    assert b.max_model_len == 100  # the smaller of the setting and the model's positions
    assert b.vocab_size == b.model.config.vocab_size
    assert load_bundle(ModelSettings(name="t", path=str(engine_pair.target)), tmp_path).draft is None


def test_quantization_configs() -> None:
    assert quantization_config(Quantization.NONE, torch.float32) is None
    assert quantization_config(Quantization.INT8, torch.float32).load_in_8bit
    nf4 = quantization_config(Quantization.NF4, torch.float32)
    assert nf4.load_in_4bit and nf4.bnb_4bit_quant_type == "nf4" and not nf4.bnb_4bit_use_double_quant
    assert quantization_config(Quantization.NF4_DOUBLE, torch.float32).bnb_4bit_use_double_quant
    assert quantization_config(Quantization.FP4, torch.float32).bnb_4bit_quant_type == "fp4"


@pytest.mark.parametrize("quant", [Quantization.INT8, Quantization.NF4, Quantization.NF4_DOUBLE])
def test_quantized_target_and_draft_generate_through_the_engine(
    engine_pair: Pair, tmp_path: Path, quant: Quantization
) -> None:
    import bitsandbytes as bnb

    ms = ModelSettings(
        name="q",
        path=str(engine_pair.target),
        draft_path=str(engine_pair.draft),
        quantization=quant,
        draft_quantization=quant,
    )
    b = without_eos(load_bundle(ms, tmp_path))
    linear = bnb.nn.Linear8bitLt if quant is Quantization.INT8 else bnb.nn.Linear4bit
    layer = b.model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, linear) and isinstance(b.draft.model.layers[0].self_attn.q_proj, linear)
    full = load_bundle(ModelSettings(name="f", path=str(engine_pair.target)), tmp_path)
    assert b.weights_bytes < full.weights_bytes
    ps = prompts(3, seed=11)
    plain = run(
        ContinuousEngine(b, EngineConfig(spec_max_batch_size=0, seed=0)),
        [(0, req(f"r{i}", p, 8)) for i, p in enumerate(ps)],
    )
    engine = ContinuousEngine(b, EngineConfig(spec_max_batch_size=4, seed=0))
    spec = run(engine, [(i, req(f"r{i}", p, 8)) for i, p in enumerate(ps)])
    assert engine.stats().spec_draft_tokens > 0
    assert engine.stats().weights_bytes == b.weights_bytes + b.draft_weights_bytes
    for i, p in enumerate(ps):
        assert len(plain[f"r{i}"].tokens) == len(spec[f"r{i}"].tokens) == 8
        assert all(0 <= t < b.vocab_size for t in plain[f"r{i}"].tokens + spec[f"r{i}"].tokens)
        if quant is Quantization.INT8:
            # LLM.int8() quantizes activations (through fp16) and takes fp16 outlier columns from every row
            # of a matmul: its argmax moves with batch composition and with float noise far below fp32's,
            # so on this near-uniform random model only the 4-bit paths are compared token for token
            continue
        with torch.inference_mode():
            ref = b.model.generate(
                torch.tensor([p]), max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0
            )
        assert plain[f"r{i}"].tokens == ref[0, len(p) :].tolist()
        assert spec[f"r{i}"].tokens == plain[f"r{i}"].tokens


@pytest.mark.slow
@pytest.mark.timeout(DEMO_BUILD_TIMEOUT_S)
@needs_demo_models
def test_the_demo_pair_loads_by_name_and_speculates_exactly(demo_models: Any) -> None:
    """The trained demo pair through `demo:` names: speculative greedy equals plain greedy."""
    cache_dir = demo_models.root.parent
    ms = ModelSettings(name="large", path="demo:large", draft_path="demo:small", ngram_speculation=True)
    b = without_eos(load_bundle(ms, cache_dir))
    assert b.path == demo_models.large and b.draft_path == demo_models.small
    ps = [b.tokenizer(text)["input_ids"] for text in ("import os\n\n\ndef ", "class Stack:\n    def push(self, ")]
    arrivals = [(0, req(f"r{i}", p, 48)) for i, p in enumerate(ps)]
    plain = run(ContinuousEngine(dataclasses.replace(b, draft=None), EngineConfig(spec_max_batch_size=0)), arrivals)
    engine = ContinuousEngine(b, EngineConfig(ngram_speculation=True))
    spec = run(engine, arrivals)
    assert {k: r.tokens for k, r in spec.items()} == {k: r.tokens for k, r in plain.items()}
    assert engine.stats().spec_accepted_tokens > 0
