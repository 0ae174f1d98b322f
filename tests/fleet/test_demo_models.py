"""Demo models: tiny checkpoints load and generate, the tokenizer's chat template, path resolution,
the cache (build once, atomically), and a deterministic build, exercised on a tiny recipe."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from fleet.demo_models import (
    DEMO_RECIPE,
    BuildRecipe,
    DemoModels,
    build_demo_models,
    build_tiny_checkpoint,
    demo_dir_name,
    ensure_demo_models,
    resolve_model_path,
)
from fleet.demo_models import cache as demo_cache
from fleet.demo_models.architecture import ModelShape
from fleet.demo_models.corpus import chat_examples
from fleet.demo_models.train import Recipe
from tests.fixtures_models import DEMO_BUILD_TIMEOUT_S, TinyPair, needs_demo_models

# The whole build pipeline at toy scale: a few seconds, same code paths as the real recipe.
TINY_RECIPE = BuildRecipe(
    corpus_bytes=200_000,
    tokenizer_bytes=100_000,
    vocab_size=320,
    target=ModelShape(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64),
    draft=ModelShape(hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64),
    draft_layers=(1,),
    target_recipe=Recipe(steps=3, batch_size=2, seq_len=32, lr=1e-3, warmup_steps=1),
    draft_recipe=Recipe(steps=2, batch_size=2, seq_len=32, lr=1e-3, warmup_steps=1),
    on_policy_sequences=2,
    on_policy_prompt_len=8,
    eval_windows=2,
    eval_seq_len=32,
    eval_prompts=2,
    eval_new_tokens=4,
    latency_steps=2,
    sample_tokens=4,
    max_chats=50,
)

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Write a function that adds two numbers."},
]


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint / "model.safetensors")


def test_tiny_checkpoint_loads_with_from_pretrained_and_generates(tiny_checkpoint: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    ids = tokenizer("def add(a, b):", return_tensors="pt")["input_ids"]
    assert ids[0, 0] == tokenizer.bos_token_id  # plain prompts start like training documents

    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False)

    assert out.shape == (1, ids.shape[1] + 5)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert {tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token} == {"<|bos|>", "<|eos|>", "<|pad|>"}


def test_tokenizer_round_trips_any_text(tiny_checkpoint: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    text = "def f(x_y):\n\treturn 'é€' + r\"\\n\"  # 🐍\n"

    ids = tokenizer(text)["input_ids"]

    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_chat_template_opens_an_assistant_turn(tiny_checkpoint: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)

    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=True)["input_ids"]

    assert text == (
        "<|bos|><|system|>\nBe brief.<|eos|>\n<|user|>\nWrite a function that adds two numbers.<|eos|>\n<|assistant|>\n"
    )
    assert ids[0] == tokenizer.bos_token_id and ids[1] != tokenizer.bos_token_id  # one bos, not two
    assert tokenizer.decode(ids) == text


def test_chat_template_rejects_unknown_roles(tiny_checkpoint: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)

    with pytest.raises(Exception, match="unsupported role: tool"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "{}"}], tokenize=False)


def test_tiny_pair_shares_one_vocab_and_the_draft_is_smaller(tiny_pair: TinyPair) -> None:
    target = AutoModelForCausalLM.from_pretrained(tiny_pair.target)
    draft = AutoModelForCausalLM.from_pretrained(tiny_pair.draft)

    target_vocab = AutoTokenizer.from_pretrained(tiny_pair.target).get_vocab()
    assert AutoTokenizer.from_pretrained(tiny_pair.draft).get_vocab() == target_vocab
    assert target.config.vocab_size == draft.config.vocab_size == len(target_vocab)
    assert draft.num_parameters() < target.num_parameters()


def test_default_tiny_checkpoints_share_the_vocab_but_not_the_weights(tmp_path: Path) -> None:
    first = build_tiny_checkpoint(tmp_path / "a", seed=0)
    second = build_tiny_checkpoint(tmp_path / "b", seed=1)

    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()
    key = "model.embed_tokens.weight"
    assert not torch.equal(_weights(first)[key], _weights(second)[key])


def test_resolve_model_path_explains_a_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"

    with pytest.raises(FileNotFoundError, match=r"no-such-model.*does not exist"):
        resolve_model_path(str(missing), tmp_path)


def test_resolve_model_path_returns_existing_paths_with_user_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "model").mkdir()

    assert resolve_model_path("~/model", tmp_path / "cache") == tmp_path / "model"


def test_resolve_model_path_without_building_points_at_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"python -m fleet\.demo_models"):
        resolve_model_path("demo:large", tmp_path, build_missing=False)
    with pytest.raises(ValueError, match=r"unknown demo model 'demo:medium'"):
        resolve_model_path("demo:medium", tmp_path)


def test_chat_examples_pair_a_docstring_line_with_its_function() -> None:
    source = 'class A:\n    def area(self, r):\n        """Return the area of a circle."""\n        return 3 * r\n'

    [example] = chat_examples(source)

    assert example.instruction == "Write a Python function `area`: Return the area of a circle."
    assert example.answer.startswith('def area(self, r):\n    """Return')


def test_build_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        (tmp_path / name).mkdir()
        build_demo_models(tmp_path / name, seed=seed, recipe=TINY_RECIPE, progress=False)

    for model in ("large", "small"):
        first, again, other = (_weights(tmp_path / name / model) for name in "abc")
        assert first.keys() == again.keys()
        assert all(torch.equal(first[key], again[key]) for key in first)
        assert not all(torch.equal(first[key], other[key]) for key in first)
    assert (tmp_path / "a/large/tokenizer.json").read_bytes() == (tmp_path / "b/small/tokenizer.json").read_bytes()


def test_ensure_demo_models_builds_once_under_concurrency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_build = demo_cache.build_demo_models

    def counting_build(out_dir: Path, **kwargs: object) -> dict[str, object]:
        calls.append(1)
        return real_build(out_dir, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(demo_cache, "build_demo_models", counting_build)
    results: list[DemoModels] = []

    def build() -> None:
        results.append(ensure_demo_models(tmp_path, progress=False, recipe=TINY_RECIPE))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(calls) == 1
    assert results[0] == results[1]
    assert results[0].root == tmp_path / demo_dir_name(0)
    assert AutoModelForCausalLM.from_pretrained(results[0].small).config.num_hidden_layers == 1


def test_ensure_demo_models_records_metadata_and_cleans_up_killed_builds(tmp_path: Path) -> None:
    stale = tmp_path / f".{demo_dir_name(3)}.tmp-99999"
    (stale / "large").mkdir(parents=True)  # what a killed build leaves behind: never mistaken for a build

    models = ensure_demo_models(tmp_path, seed=3, progress=False, recipe=TINY_RECIPE)

    metadata = models.metadata()
    assert metadata["seed"] == 3 and metadata["fingerprint"] == TINY_RECIPE.fingerprint()
    for key in ("params", "build_seconds", "agreement_heldout", "agreement_target_greedy", "latency_ratio"):
        assert key in metadata
    assert not stale.exists()
    assert models.tokenizer == models.large


def test_ensure_demo_models_rebuilds_when_forced_or_the_recipe_changed(tmp_path: Path) -> None:
    first = ensure_demo_models(tmp_path, progress=False, recipe=TINY_RECIPE)
    built_at = first.metadata()["build_seconds"], (first.root / "demo.json").stat().st_mtime_ns

    same = ensure_demo_models(tmp_path, progress=False, recipe=TINY_RECIPE)
    assert (same.metadata()["build_seconds"], (same.root / "demo.json").stat().st_mtime_ns) == built_at

    changed = dataclasses.replace(TINY_RECIPE, notes={"why": "a different recipe"})
    rebuilt = ensure_demo_models(tmp_path, progress=False, recipe=changed)
    assert rebuilt.metadata()["fingerprint"] == changed.fingerprint()
    assert not list(tmp_path.glob(".demo-*"))  # no staging or retired directories left


def test_demo_recipe_is_versioned_by_fingerprint() -> None:
    assert DEMO_RECIPE.fingerprint() == dataclasses.replace(DEMO_RECIPE).fingerprint()
    assert DEMO_RECIPE.fingerprint() != dataclasses.replace(DEMO_RECIPE, vocab_size=1024).fingerprint()


@pytest.mark.slow
@pytest.mark.timeout(DEMO_BUILD_TIMEOUT_S)
@needs_demo_models
def test_demo_models_are_fit_for_speculative_decoding(demo_models: DemoModels) -> None:
    metadata = demo_models.metadata()
    assert metadata["params"]["small"] * 2 < metadata["params"]["large"]
    assert metadata["agreement_target_greedy"] >= 0.7
    assert metadata["latency_ratio"] >= 4.0  # measured at build time; CPU contention can only lower it

    tokenizer = AutoTokenizer.from_pretrained(demo_models.tokenizer)
    large = AutoModelForCausalLM.from_pretrained(demo_models.large)
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = large.generate(**ids, max_new_tokens=64, do_sample=False)

    assert out.shape[1] > ids["input_ids"].shape[1]
    assert AutoTokenizer.from_pretrained(demo_models.small).get_vocab() == tokenizer.get_vocab()
    assert resolve_model_path("demo:small", demo_models.root.parent, build_missing=False) == demo_models.small
