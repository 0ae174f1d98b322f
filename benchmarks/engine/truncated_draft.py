"""An untrained draft model cut from the target itself: its embedding, first `k` decoder layers,
final norm and (tied) LM head, saved as a Hugging Face checkpoint that shares the target's
tokenizer. For measuring whether such a draft pays (`python -m benchmarks.engine.bench
--draft DIR --spec-method draft|hybrid`); nothing in the fleet builds or uses it.

    python -m benchmarks.engine.truncated_draft /path/to/target /tmp/draft-k4 --layers 4
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def truncate(target: Path, out: Path, layers: int) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(target)
    if not 1 <= layers < config.num_hidden_layers:
        raise SystemExit(f"--layers must be 1..{config.num_hidden_layers - 1}")
    model = AutoModelForCausalLM.from_pretrained(target)
    inner = model.model
    inner.layers = inner.layers[:layers]
    model.config.num_hidden_layers = layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:layers]
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (target / name).exists():
            shutil.copy(target / name, out / name)
    return out


def main(argv: list[str] | None = None) -> int:
    prog = "python -m benchmarks.engine.truncated_draft"
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("target", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--layers", type=int, required=True)
    args = p.parse_args(argv)
    print(truncate(args.target, args.out, args.layers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
