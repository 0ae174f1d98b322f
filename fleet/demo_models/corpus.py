"""The training text: the Python standard library's own source, which every machine with Python has.

Files are read in sorted order with a size cap so a build sees the same bytes every time. Besides whole
files (documents the model learns to end with eos), functions with docstrings become small chat examples
(the docstring's first line asks, the function answers) so chat requests get a short code answer that
stops on its own.
"""

from __future__ import annotations

import ast
import os
import random
import sysconfig
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Directories that are not "the standard library every machine has": installed packages, and the
# test suites and big generated data files that some distributions strip or that are not code.
_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "pydoc_data", "__pycache__"}
)
_MAX_FILE_BYTES = 200_000  # a few giant modules would otherwise dominate the sample
_HELDOUT_EVERY = 20  # every 20th file (in sorted order) is kept out of training

SYSTEM_PROMPT = "You are a helpful Python assistant."


@dataclass(frozen=True, slots=True)
class ChatExample:
    """One synthetic conversation: an instruction and the function that answers it."""

    instruction: str
    answer: str
    with_system: bool


@dataclass(frozen=True, slots=True)
class Corpus:
    """Training and held-out source files plus chat examples mined from the training files."""

    train: list[str]
    heldout: list[str]
    chats: list[ChatExample]


def stdlib_root() -> Path:
    """Where this interpreter's standard library lives (the same tree on every build with this Python)."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[Path]:
    """Every eligible .py file under the stdlib, sorted by relative path so the order is reproducible."""
    base = stdlib_root()
    found = []
    for directory, subdirs, names in os.walk(base):
        # prune in place so the walk never descends into site-packages (often far bigger than the stdlib)
        subdirs[:] = [d for d in subdirs if d not in _SKIP_DIRS and not d.startswith("test")]
        found += [Path(directory, name) for name in names if name.endswith(".py")]
    return sorted(found, key=lambda p: p.relative_to(base).as_posix())


def take_within(texts: Iterable[str], max_bytes: int) -> Iterator[str]:
    """`texts` in order, stopping before the first one that would take the total `len` past `max_bytes`."""
    total = 0
    for text in texts:
        total += len(text)
        if total > max_bytes:
            return
        yield text


def _readable_sources(files: list[Path]) -> Iterator[str]:
    """File texts in order, skipping unreadable, huge or empty files."""
    for path in files:
        try:
            if path.stat().st_size > _MAX_FILE_BYTES:
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if text.strip():
            yield text


def read_sources(files: list[Path], max_bytes: int) -> Iterator[str]:
    """File texts in order until `max_bytes` is reached; unreadable, huge or empty files are skipped."""
    return take_within(_readable_sources(files), max_bytes)


def chat_examples(source: str, max_answer_chars: int = 1200) -> list[ChatExample]:
    """Functions with a docstring, as (first docstring line -> function source) conversations."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines(keepends=True)
    examples: list[ChatExample] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.name.startswith("_"):
            continue
        doc = ast.get_docstring(node)
        # whole lines, sliced once (ast.get_source_segment re-splits the file on every call)
        answer = textwrap.dedent("".join(lines[node.lineno - 1 : node.end_lineno])).rstrip()
        if not doc or len(answer) > max_answer_chars or not answer.startswith(("def ", "async def ")):
            continue
        first = doc.strip().splitlines()[0].strip()
        if len(first) < 12 or first.endswith(":"):
            continue
        instruction = f"Write a Python function `{node.name}`: {first}"
        examples.append(ChatExample(instruction, answer, with_system=len(examples) % 3 == 0))
    return examples


def load_corpus(max_bytes: int, *, seed: int, max_chats: int | None = None) -> Corpus:
    """Read up to `max_bytes` of stdlib source, split train/held-out by file, mine chat examples."""
    train: list[str] = []
    heldout: list[str] = []
    for index, text in enumerate(read_sources(stdlib_files(), max_bytes)):
        (heldout if index % _HELDOUT_EVERY == _HELDOUT_EVERY - 1 else train).append(text)
    if not heldout and len(train) > 1:  # a small corpus still needs something to measure on
        heldout.append(train.pop())
    chats = [example for text in train for example in chat_examples(text)]
    random.Random(seed).shuffle(chats)
    return Corpus(train=train, heldout=heldout, chats=chats[:max_chats] if max_chats is not None else chats)
