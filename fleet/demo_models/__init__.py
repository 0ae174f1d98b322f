"""The demo models: a small target (`large`) and a much smaller draft (`small`) sharing one tokenizer,
trained on this machine on the Python standard library's source and saved in Hugging Face format.

`ensure_demo_models` builds them once into a cache directory (a few minutes on 2 CPU cores) and
`resolve_model_path` maps the settings' "demo:large" / "demo:small" specs to those directories.
`build_tiny_checkpoint` writes random-init checkpoints for tests. Build from a shell with
`python -m fleet.demo_models`.
"""

from fleet.demo_models.build import DEMO_RECIPE, BuildRecipe, build_demo_models
from fleet.demo_models.cache import DemoModels, ensure_demo_models, resolve_model_path
from fleet.demo_models.tiny import build_tiny_checkpoint
from fleet.model_paths import demo_dir_name

__all__ = [
    "DEMO_RECIPE",
    "BuildRecipe",
    "DemoModels",
    "build_demo_models",
    "build_tiny_checkpoint",
    "demo_dir_name",
    "ensure_demo_models",
    "resolve_model_path",
]
