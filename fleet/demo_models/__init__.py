"""The demo models: a small Llama target (`large`) and a much smaller draft (`small`) sharing one
byte-level BPE tokenizer, trained on this machine on the Python standard library's source and saved
in Hugging Face format in the cache directory. Also tiny random-init checkpoints for tests."""

from fleet.demo_models.cache import DemoModels, ensure_demo_models, resolve_model_path
from fleet.demo_models.tiny import build_tiny_checkpoint

__all__ = ["DemoModels", "build_tiny_checkpoint", "ensure_demo_models", "resolve_model_path"]
