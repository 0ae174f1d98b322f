"""The shared tokenizer: byte-level BPE trained on stdlib source, wrapped for transformers.

Byte-level so any text round-trips (no unknown tokens); a modest vocabulary so the LM head stays cheap
next to the transformer layers; bos/eos/pad and a chat template so `apply_chat_template` works on the
demo models the same way it does on hub models.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from fleet.demo_models.corpus import ChatExample, read_sources, stdlib_files

BOS = "<|bos|>"
EOS = "<|eos|>"
PAD = "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_TOKENS)  # pad is id 0, bos 1, eos 2

# Each turn: a role marker, a newline, the content, eos. The generation prompt opens an assistant turn,
# so a model trained on this format answers and then emits eos (finish_reason "stop").
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unsupported role: ' + message['role']) }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

# GPT-2's split, but with Python identifiers (underscores included) kept whole so that BPE can merge
# `_check_name` or `__init__` instead of splitting at every underscore.
PRE_TOKENIZER_PATTERN = r" ?[\p{L}_][\p{L}\p{N}_]*| ?\p{N}+| ?[^\s\p{L}\p{N}_]+|\s+(?!\S)|\s+"

TINY_VOCAB_SIZE = 512
_TINY_CORPUS_BYTES = 150_000


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE. The tokenizers trainer is deterministic for a fixed input order."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRE_TOKENIZER_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # a plain prompt gets bos like every training document, so prompt and training contexts match
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tokenizer.token_to_id(BOS))]
    )
    return tokenizer


def wrap(tokenizer: Tokenizer, model_max_length: int) -> PreTrainedTokenizerFast:
    """A transformers tokenizer with the special tokens and chat template set."""
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def render_chat(example: ChatExample, system_prompt: str) -> str:
    """The text of one training conversation, exactly as CHAT_TEMPLATE renders it."""
    turns = [("system", system_prompt)] if example.with_system else []
    turns += [("user", example.instruction), ("assistant", example.answer)]
    return BOS + "".join(f"<|{role}|>\n{content}{EOS}\n" for role, content in turns)


def render_file(text: str) -> str:
    """A whole source file as one document: bos, the text, eos (so the model learns to stop)."""
    return f"{BOS}{text}{EOS}"


@functools.cache
def _tiny_tokenizer_json() -> str:
    """The small test tokenizer, trained once per process on a slice of stdlib (well under a second)."""
    texts = list(read_sources(stdlib_files(), _TINY_CORPUS_BYTES))
    return train_bpe(texts, TINY_VOCAB_SIZE).to_str()


def tiny_tokenizer(model_max_length: int = 2048) -> PreTrainedTokenizerFast:
    """The test tokenizer; every call returns the same vocabulary, so tiny targets and drafts share it."""
    return wrap(Tokenizer.from_str(_tiny_tokenizer_json()), model_max_length)
