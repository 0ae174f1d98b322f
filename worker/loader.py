"""Load a model the way users load one: `from_pretrained` on a Hugging Face directory,
with a bitsandbytes config for 8-bit and 4-bit weights, plus the draft model that
speculates for it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import torch

from fleet.model_paths import resolve_model_path
from fleet.settings import ModelSettings, Quantization

log = structlog.get_logger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(slots=True)
class ModelBundle:
    tokenizer: Any  # a transformers tokenizer
    model: Any  # the target: a transformers causal LM
    draft: Any | None  # the draft model, sharing the target's tokenizer
    eos_token_ids: frozenset[int]
    weights_bytes: int  # target weights and buffers as loaded (quantized size when quantized)
    draft_weights_bytes: int
    max_model_len: int
    device: torch.device
    dtype: torch.dtype  # compute dtype of the non-quantized parts
    kv_dtype: torch.dtype
    vocab_size: int  # rows of the target's LM head
    path: Path | None = None
    draft_path: Path | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_path(spec: str, cache_dir: Path) -> Path:
    """A model directory: "demo:large" / "demo:small" name the built demo models (`fleet up` and
    `fleet models build` build them; a worker never trains); anything else is a path, which must exist."""
    return resolve_model_path(spec, cache_dir)


def quantization_config(quant: Quantization, dtype: torch.dtype) -> Any | None:
    """The BitsAndBytesConfig for a Quantization (None for full precision)."""
    if quant is Quantization.NONE:
        return None
    from transformers import BitsAndBytesConfig

    if quant is Quantization.INT8:
        return BitsAndBytesConfig(load_in_8bit=True)  # type: ignore[no-untyped-call]
    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True,
        bnb_4bit_quant_type="fp4" if quant is Quantization.FP4 else "nf4",
        bnb_4bit_use_double_quant=quant is Quantization.NF4_DOUBLE,
        bnb_4bit_compute_dtype=dtype,
    )


def _quiet_int8_cast_notice() -> None:
    # LLM.int8() quantizes fp32 activations through fp16 by design and logs it on every matmul
    # (thousands of lines a second); we say it once here instead.
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    log.info("loader.int8_activations", note="bitsandbytes casts int8 matmul inputs to float16")


def load_model(path: Path, quant: Quantization, dtype: torch.dtype, device: torch.device) -> Any:
    from transformers import AutoModelForCausalLM

    qconfig = quantization_config(quant, dtype)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
        kwargs["device_map"] = {"": device.index if device.type == "cuda" and device.index is not None else device.type}
        if quant is Quantization.INT8:
            _quiet_int8_cast_notice()
    model: Any = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if qconfig is None:
        model = model.to(device)
    model.eval()
    return model


def eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for source in (
        getattr(gen, "eos_token_id", None),
        getattr(model.config, "eos_token_id", None),
        tokenizer.eos_token_id,
    ):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(int(i) for i in source)
    return frozenset(ids)


def max_len(model: Any, configured: int) -> int:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    limit = getattr(config, "max_position_embeddings", None)
    return min(configured, limit) if limit else configured


def footprint(model: Any) -> int:
    return int(model.get_memory_footprint())


def load_tokenizer(path: Path) -> Any:
    """The checkpoint's tokenizer (a draft shares its target's)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def load_bundle(model: ModelSettings, cache_dir: Path) -> ModelBundle:
    device = resolve_device(model.device)
    dtype = DTYPES[model.dtype]
    path = resolve_path(model.path, cache_dir)
    tokenizer = load_tokenizer(path)
    target = load_model(path, model.quantization, dtype, device)
    draft, draft_path = None, None
    if model.draft_path:
        draft_path = resolve_path(model.draft_path, cache_dir)
        draft = load_model(draft_path, model.draft_quantization, dtype, device)
    vocab = int(target.get_output_embeddings().weight.shape[0])
    bundle = ModelBundle(
        tokenizer=tokenizer,
        model=target,
        draft=draft,
        eos_token_ids=eos_ids(target, tokenizer),
        weights_bytes=footprint(target),
        draft_weights_bytes=footprint(draft) if draft is not None else 0,
        max_model_len=max_len(target, model.max_model_len),
        device=device,
        dtype=dtype,
        kv_dtype=dtype,
        vocab_size=vocab,
        path=path,
        draft_path=draft_path,
    )
    log.info(
        "loader.loaded",
        model=model.name,
        path=str(path),
        quantization=str(model.quantization),
        weights_bytes=bundle.weights_bytes,
        draft=str(draft_path) if draft_path else None,
        draft_quantization=str(model.draft_quantization) if draft_path else None,
        draft_weights_bytes=bundle.draft_weights_bytes,
        device=str(device),
        max_model_len=bundle.max_model_len,
    )
    return bundle
